"""What the user reads: the console warning while a run goes on and the closing summary's doubted estimate."""

import io
from types import SimpleNamespace

from labelscrub.progress import ConsoleProgress, closing_summary


def doubted_result():
    noise = {"estimated_noise_rate": 0.1, "spread_noise_rate": 0.1, "uncapped_noise_rate": 0.215,
             "estimate_doubt": "it was still falling (32% over the last epoch)", "rho_max_used": 0.1,
             "classes": {"cat": {"estimated_noise_rate": 0.1, "confused_with": None, "confused_share": 0.0}}}
    summary = {"counts": {"samples": 10, "trainable": 10, "dropped": 1, "kept": 9, "unreadable": 0,
                          "classes": 1},
               "dropped_by_class": {"cat": 1}, "noise": noise, "config": {"relabel": False}}
    return SimpleNamespace(summary=summary, heldout_accuracy=None, report_path="r", manifest_path="m",
                           model_path="p", run_json_path="j", audit_path=None)


def test_the_closing_summary_says_the_estimate_was_doubted_and_what_it_read():
    text = closing_summary(doubted_result())
    assert "warning: the noise estimate cannot be trusted (it was still falling (32% over the last epoch))" in text
    assert "read 21.5%, capped at 10.0%" in text


def test_a_note_reaches_the_console_as_a_warning_line():
    stream = io.StringIO()
    ConsoleProgress(stream).note("the noise estimate is still falling")
    assert stream.getvalue() == "warning: the noise estimate is still falling\n"
