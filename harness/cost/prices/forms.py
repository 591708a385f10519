"""Form factors (SXM, PCIe, NVL) as instance names tell them, and the form a datasheet row is.

One GPU model sells in several forms that run at different speeds (H100 SXM 989.5 bf16 TFLOP/s,
H100 PCIe 756, H100 NVL between), so a projection to one form must not be priced with another's
offers. Price catalogs do not say the form; the instance type often does. Where it does not, the
form stays unknown (None), never guessed.
"""

from __future__ import annotations

import re

FORMS = ("SXM", "PCIe", "NVL")

# Any provider: the instance name spells the form (Lambda: gpu_1x_h100_pcie, gpu_8x_h100_sxm5,
# gpu_8x_a100_80gb_sxm4, gpu_1x_b200_sxm6).
_IN_NAME = ((re.compile(r"sxm", re.IGNORECASE), "SXM"), (re.compile(r"pcie", re.IGNORECASE), "PCIe"),
            (re.compile(r"nvl", re.IGNORECASE), "NVL"))

# Per provider, by instance family, from each cloud's instance documentation:
# AWS (https://aws.amazon.com/ec2/instance-types/accelerated-computing/): p3 V100 SXM2, p4d/p4de
#   A100 SXM4, p5 H100 SXM5, p5e/p5en H200 SXM, p6-b200 B200 SXM (HGX boards); g4dn T4, g5 A10G,
#   g6 L4, g6e L40S are PCIe cards.
# Azure (https://learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/): NCads H100 v5
#   and NCadis H100 v5 are H100 NVL; ND H100/H200 v5 are SXM (HGX); NC A100 v4 is PCIe; ND A100 v4
#   (ND96asr_v4, ND96amsr_A100_v4) SXM; NCv3 V100 PCIe; NDv2 (ND40rs_v2) V100 SXM2.
# GCP (https://cloud.google.com/compute/docs/gpus): a2 (A100), a3 (H100, H200), a4 (B200) are SXM
#   (HGX); g2 L4 is a PCIe card. GPU-only rows (GPUs attached to an N1 VM) do not say.
_BY_FAMILY: dict[str, tuple[tuple[re.Pattern, str], ...]] = {
    "aws": ((re.compile(r"^p(3|3dn|4d|4de|5|5e|5en|6-b200|6e-gb200)\."), "SXM"),
            (re.compile(r"^(g4dn|g5|g6|g6e|gr6)\."), "PCIe")),
    "azure": ((re.compile(r"^Standard_NC\d+ad[is]*_H100_v5$"), "NVL"),
              (re.compile(r"^Standard_ND\d+\w*_(H100|H200)_v5$"), "SXM"),
              (re.compile(r"^Standard_NC\d+ads_A100_v4$"), "PCIe"),
              (re.compile(r"^Standard_ND96a(m)?sr(_A100)?_v4$"), "SXM"),
              (re.compile(r"^Standard_NC\d+r?s_v3$"), "PCIe"),
              (re.compile(r"^Standard_ND40rs_v2$"), "SXM"),
              (re.compile(r"^Standard_NC\d+as_T4_v3$"), "PCIe")),
    "gcp": ((re.compile(r"^(a2|a3|a4)-"), "SXM"), (re.compile(r"^g2-"), "PCIe")),
}


def instance_form(provider: str, instance: str) -> str | None:
    """The form factor an instance type tells ("SXM", "PCIe", "NVL"), or None when it does not."""
    for pattern, form in _IN_NAME:
        if pattern.search(instance):
            return form
    for pattern, form in _BY_FAMILY.get(provider, ()):
        if pattern.search(instance):
            return form
    return None


def datasheet_form(name: str) -> str | None:
    """The form a datasheet row or device name states ("H100 SXM" → "SXM", "V100 SXM2" → "SXM",
    "H100 PCIe" → "PCIe", "NVIDIA H100 NVL" → "NVL"); None when it states none ("A100", "L4")."""
    upper = name.upper()
    if "PCIE" in upper:
        return "PCIe"
    if "NVL" in upper:
        return "NVL"
    if "SXM" in upper or "HBM3" in upper:  # "NVIDIA H100 80GB HBM3" is how CUDA names the SXM part
        return "SXM"
    return None
