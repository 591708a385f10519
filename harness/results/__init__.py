"""Store and read: the run record, the results database, and the pandas API over them.

`from harness.results import load, records, get, export, import_files` is the public API.
"""

from harness.results.api import ImportResult, export, get, import_files, load, read_records, records
from harness.results.record import RunRecord

__all__ = ["ImportResult", "RunRecord", "export", "get", "import_files", "load", "read_records", "records"]
