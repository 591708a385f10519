"""Published: figures from papers that the project checks itself against, transcribed with their
sources. Pure data (no torch, no I/O): harness.cost.reproduce recomputes them, the report draws them.
"""

# (model, parameters as the paper names them, plan, paper one-run USD, paper fully-loaded USD)
AI21_ROWS = (
    ("BERT-base", 110e6, "bert-pretraining", 2_500.0, 50_000.0),
    ("BERT-large", 340e6, "bert-pretraining", 10_000.0, 200_000.0),
    ("1.5B on the BERT corpus", 1.5e9, "bert-pretraining", 80_000.0, 1_600_000.0),
    # "well above $1.3 million for a single run"; ~$10M for the whole project (not 20x).
    ("T5-11B", 11e9, "t5-c4", 1_300_000.0, None),
)
AI21_SOURCE = "Sharir, Peleg, Shoham (AI21 Labs) 2020, arXiv 2004.08900"


# Strubell, Ganesh, McCallum 2019 (arXiv 1906.02243), Table 3: (model, hardware, accelerators,
# total power W or None, hours, kWh·PUE, CO2e lbs, cloud cost min, max USD).
STRUBELL_ROWS = (
    ("Transformer_base", "P100x8", 8, 1415.78, 12, 27, 26, 41, 140),
    ("Transformer_big", "P100x8", 8, 1515.43, 84, 201, 192, 289, 981),
    ("ELMo", "P100x3", 3, 517.66, 336, 275, 262, 433, 1472),
    ("BERT_base", "V100x64", 64, 12041.51, 79, 1507, 1438, 3751, 12571),
    ("BERT_base", "TPUv2x16", 16, None, 96, None, None, 2074, 6912),
    ("NAS", "P100x8", 8, 1515.43, 274120, 656347, 626155, 942973, 3201722),
    ("NAS", "TPUv2x1", 1, None, 32623, None, None, 44055, 146848),
    ("GPT-2", "TPUv3x32", 32, None, 168, None, None, 12902, 43008),
)
STRUBELL_SOURCE = "Strubell, Ganesh, McCallum 2019, arXiv 1906.02243, Table 3"
STRUBELL_PUE = 1.58
STRUBELL_LBS_PER_KWH = 0.954
