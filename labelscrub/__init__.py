"""labelscrub: find mislabeled samples in image-classification datasets with Step-E training.

    import labelscrub
    result = labelscrub.clean("sample_data/digits", "runs/digits", epochs=15, rho_max=0.2)
"""

__version__ = "0.1.0"

from labelscrub.apply import AppliedResult, apply_decisions  # noqa: E402
from labelscrub.audit import AuditResult, write_audit  # noqa: E402
from labelscrub.config import CleanConfig  # noqa: E402
from labelscrub.errors import LabelscrubError  # noqa: E402
from labelscrub.pipeline import CleanResult, clean  # noqa: E402
from labelscrub.retrain import RetrainResult, retrain  # noqa: E402

__all__ = ["AppliedResult", "AuditResult", "CleanConfig", "CleanResult", "LabelscrubError", "RetrainResult",
           "__version__", "apply_decisions", "clean", "retrain", "write_audit"]
