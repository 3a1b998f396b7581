"""The progress callback: a compact bar on terminals, every metric per epoch."""
from official.core import callbacks


def _run_epoch(progress, logs):
  progress.on_epoch_begin(0)
  for step in range(2):
    progress.on_train_batch_end(step, logs)
  progress.on_epoch_end(0, logs)


LOGS = {"loss": 0.5, "clean_accuracy": 0.9, "adversarial_accuracy": 0.7,
        "weight/adv/max": 3.25, "method/log_u": -1.5}


def test_terminal_bar_shows_only_headline_metrics(capsys):
  _run_epoch(callbacks.Progress(epochs=3, steps_per_epoch=2, live=True), LOGS)
  out = capsys.readouterr().out
  bar, summary = out.rsplit("Epoch 1/3 - ", 1)
  assert "adversarial_accuracy: 0.7" in bar
  assert "weight/adv/max" not in bar and "method/log_u" not in bar
  # The end-of-epoch line keeps everything, at 4 significant digits.
  assert "weight/adv/max: 3.25" in summary and "method/log_u: -1.5" in summary
  assert summary.count("\n") == 1


def test_log_files_get_one_line_per_epoch(capsys):
  _run_epoch(callbacks.Progress(epochs=3, steps_per_epoch=2, live=False), LOGS)
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 1 and lines[0].startswith("Epoch 1/3 - ")
  assert "loss: 0.5 - clean_accuracy: 0.9" in lines[0]
