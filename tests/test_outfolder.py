"""The output-folder guard: never inside the input, never over files unless told to replace or resume."""

import pytest

from labelscrub.errors import LabelscrubError
from labelscrub.outfolder import prepare_out_dir


def test_resume_needs_a_checkpoint_and_a_fresh_run_needs_an_empty_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    with pytest.raises(LabelscrubError, match="not empty"):
        prepare_out_dir(tmp_path / "out", tmp_path / "data.csv", overwrite=False)
    with pytest.raises(LabelscrubError, match="no checkpoint.pt"):
        prepare_out_dir(tmp_path / "out", tmp_path / "data.csv", overwrite=False, resume=True)
    prepare_out_dir(tmp_path / "out", tmp_path / "data.csv", overwrite=True)


def test_an_output_folder_inside_the_input_folder_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(LabelscrubError, match="inside the input"):
        prepare_out_dir(tmp_path / "data" / "out", tmp_path / "data", overwrite=True)
