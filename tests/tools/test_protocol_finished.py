"""tools/protocol.finished: only a run with every artifact is skipped."""
import os

from tools import protocol


def _touch(workdir, *names):
  for name in names:
    path = os.path.join(workdir, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").close()


def test_finished_needs_the_done_marker_or_a_complete_legacy_run(tmp_path):
  legacy, current = str(tmp_path / "legacy"), str(tmp_path / "current")
  # Killed between eval.json and the export (the old order): not finished.
  _touch(legacy, "eval.json")
  assert not protocol.finished(legacy)
  _touch(legacy, "export/saved_model.pb")  # the old code's last artifact
  assert protocol.finished(legacy)
  # The current code (it holds DIR/.lock) is finished only with done.json.
  _touch(current, ".lock", "eval.json", "export/saved_model.pb")
  assert not protocol.finished(current)
  _touch(current, "done.json")
  assert protocol.finished(current)
