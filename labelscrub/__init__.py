"""labelscrub: find mislabeled samples in image-classification datasets with Step-E training.

    import labelscrub
    result = labelscrub.clean("sample_data/digits", "runs/digits", epochs=15, rho_max=0.2)
"""

from labelscrub.apply import AppliedResult, apply_decisions
from labelscrub.audit import AuditResult, write_audit
from labelscrub.config import CleanConfig
from labelscrub.errors import LabelscrubError
from labelscrub.pipeline import CleanResult, clean
from labelscrub.retrain import RetrainResult, retrain
from labelscrub.version import __version__

__all__ = ["AppliedResult", "AuditResult", "CleanConfig", "CleanResult", "LabelscrubError", "RetrainResult",
           "__version__", "apply_decisions", "clean", "retrain", "write_audit"]
