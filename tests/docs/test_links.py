"""The documentation resolves: README.md and docs/*.md.

(a) Every relative link (and image) points at a file of this repository and,
    for `page.md#anchor`, at a heading of that page (GitHub's slug).
    http(s) and mailto links are not followed.
(b) Every config a page shows loads with its presets: `--config=FILE[:PRESETS]`,
    `configs/X.py:PRESETS` (also written `X.py:PRESETS`), and the entries of
    `tools.protocol` / `tools.diagnostics` commands (`--methods=a,b:p` with
    `--preset`, and `--paired=ENTRY`), each `configs/<entry>.py:<p>,<preset>`
    as tools/protocol.py builds it. A config is loaded the way official/train.py
    loads `--config`: through ml_collections' DEFINE_config_file.
"""
import functools
import glob
import importlib.util
import os
import re
import unicodedata
import urllib.parse

import pytest
from absl import flags
from ml_collections import config_flags

from official import train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGES = [os.path.join(REPO, "README.md")] + sorted(
    glob.glob(os.path.join(REPO, "docs", "*.md")))
DEFAULT_PROTOCOL_PRESET = "mnist10k"  # tools/protocol.py --preset's default

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]*)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_CONFIG_FLAG = re.compile(r"--config=([\w./-]+\.py)(?::([\w,]+))?")
_CONFIG_FILE = re.compile(r"(?<![\w./-])((?:configs/)?)(\w+)\.py:([\w,]+)")
_METHODS = re.compile(r"--methods=([\w:,]+)")
_PAIRED = re.compile(r"--paired=([\w:,]+)")
_PRESET = re.compile(r"--preset=(\w+)")


# ------------------------------------------------------------------ markdown
def prose(text):
  """The text a reader sees as prose: no fenced or indented code blocks."""
  text = _FENCE.sub("", text)
  return "\n".join("" if re.match(r"^( {4}|\t)", line) else line
                   for line in text.split("\n"))


def slug(heading):
  """GitHub's anchor for a heading: lower case, punctuation dropped (letters,
  digits, `_` and `-` kept, `ε` too), each space a hyphen."""
  text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
  text = unicodedata.normalize("NFC", text).strip().lower()
  text = "".join(c for c in text if c in " -_" or c.isalnum())
  return text.replace(" ", "-")


def anchors(path):
  """Every heading's slug in a markdown file, duplicates numbered as GitHub
  numbers them (`a`, `a-1`, `a-2`)."""
  with open(path, encoding="utf-8") as f:
    text = _FENCE.sub("", f.read())
  seen, out = {}, set()
  for line in text.split("\n"):
    match = _HEADING.match(line)
    if not match:
      continue
    base = slug(match.group(2))
    n = seen.get(base, 0)
    seen[base] = n + 1
    out.add(base if n == 0 else f"{base}-{n}")
  return out


def links(text):
  """Link targets of the prose (code spans and code blocks are not links)."""
  return _LINK.findall(_CODE_SPAN.sub("code", prose(text)))


def broken_links(page, root=REPO):
  """One message per relative link of `page` that does not resolve inside root."""
  with open(page, encoding="utf-8") as f:
    text = f.read()
  problems = []
  for target in links(text):
    if re.match(r"^(https?:|mailto:)", target):
      continue
    path, _, anchor = target.partition("#")
    path = urllib.parse.unquote(path)
    file = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
    where = f"{os.path.relpath(page, root)}: ({target})"
    if os.path.relpath(file, root).startswith(".."):
      problems.append(f"{where} leaves the repository")
    elif not os.path.exists(file):
      problems.append(f"{where} no such file")
    elif (anchor and file.endswith(".md")
          and urllib.parse.unquote(anchor) not in anchors(file)):
      problems.append(f"{where} no heading with anchor #{anchor} in "
                      f"{os.path.relpath(file, root)}")
  return problems


# ------------------------------------------------------------------- configs
@functools.lru_cache(maxsize=None)
def config_error(path, presets):
  """None if `--config=path[:presets]` (path relative to the repository)
  loads as official/train.py loads it, else the one-line reason."""
  file = os.path.join(REPO, path)
  if not os.path.isfile(file):
    return "no such file"
  if os.path.basename(path) == "common.py":
    # The presets' module, not a config: `configs/common.py:NAME` names one
    # of its functions.
    spec = importlib.util.spec_from_file_location("common_doc", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = [p for p in presets.split(",") if not hasattr(module, p)]
    return f"no {', '.join(missing)} in {path}" if missing else None
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, flag_values=values,
                                  lock_config=True)
  try:
    values(["docs", f"--config={file}" + (f":{presets}" if presets else "")])
    values.config.keys()  # a file that failed to load raises on first use
  except Exception as e:  # noqa: BLE001 -- any failure is the finding
    return train.one_line(e)
  return None


def commands(text):
  """Logical lines of code blocks (backslash continuations joined) and the
  inline code spans of the prose: where commands are shown."""
  text = text.replace("\\\n", " ")
  spans = [s.replace("\n", " ") for s in _CODE_SPAN.findall(prose(text))]
  return text.split("\n") + spans


def config_refs(text):
  """[(shown as, config file, presets)] of every config a page shows, each
  (file, presets) once, under the first form that shows it."""
  refs = {}

  def add(shown, path, presets):
    refs.setdefault((os.path.normpath(path), presets.strip(",")), shown)

  for match in _CONFIG_FLAG.finditer(text):
    add(match.group(0), match.group(1), match.group(2) or "")
  for match in _CONFIG_FILE.finditer(text):
    prefix, name, presets = match.groups()
    if prefix or os.path.isfile(os.path.join(REPO, "configs", f"{name}.py")):
      add(match.group(0), f"configs/{name}.py", presets)
  for line in commands(text):
    entries = [e for m in _METHODS.finditer(line) for e in m.group(1).split(",")]
    entries += [m.group(1) for m in _PAIRED.finditer(line)]
    if not entries:
      continue
    preset = _PRESET.search(line)
    preset = preset.group(1) if preset else DEFAULT_PROTOCOL_PRESET
    for entry in filter(None, entries):
      config, _, own = entry.partition(":")  # tools/protocol.py command()
      add(f"--methods entry {entry} --preset={preset}", f"configs/{config}.py",
          ",".join(p for p in (own, preset) if p))
  return sorted((shown, path, presets)
                for (path, presets), shown in refs.items())


def broken_configs(page, root=REPO):
  with open(page, encoding="utf-8") as f:
    text = f.read()
  problems = []
  for shown, path, presets in config_refs(text):
    error = config_error(path, presets)
    if error:
      problems.append(f"{os.path.relpath(page, root)}: {shown} "
                      f"({path}:{presets}): {error}")
  return problems


# --------------------------------------------------------------------- tests
def _name(path):
  return os.path.relpath(path, REPO)


def test_the_pages_are_there():
  names = {_name(p) for p in PAGES}
  assert {"README.md", os.path.join("docs", "methods.md"),
          os.path.join("docs", "evaluation.md")} <= names


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_relative_link_resolves(page):
  assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_config_shown_loads_with_its_presets(page):
  assert broken_configs(page) == []


def test_the_readme_shows_configs_and_links():
  """The checks above have something to check (no silent regex rot)."""
  with open(PAGES[0], encoding="utf-8") as f:
    text = f.read()
  assert len(links(text)) > 20
  shown = {(path, presets) for _, path, presets in config_refs(text)}
  assert ("configs/at.py", "digits") in shown
  assert ("configs/mail.py", "trades,mnist10k") in shown


def test_the_ci_command_is_the_readme_test_command():
  """.ci/run runs the README's test line: the quick start is a contract."""
  with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
    ci = [l.strip() for l in f if l.strip() and not l.startswith(("#", "set ", "cd ", "export "))]
  with open(PAGES[0], encoding="utf-8") as f:
    readme = f.read()
  quick = readme.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
  lines = [l.split("#")[0].strip() for l in quick.strip().split("\n")]
  assert lines[0] == "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt"
  assert lines[1].startswith(".venv/bin/python -m official.train --config=configs/at.py:digits")
  assert lines[2] == ".venv/bin/python -m pytest -q" == ci[-1]


@pytest.mark.parametrize("heading, expected", [
    ("Headline results: AutoAttack in both small-scale regimes",
     "headline-results-autoattack-in-both-small-scale-regimes"),
    ("IAAT: instance-adaptive ε (`configs/iaat.py`)",
     "iaat-instance-adaptive-ε-configsiaatpy"),
    ("`mnist10k_lt`: AT, AT + class-balanced weights, SRAT",
     "mnist10k_lt-at-at--class-balanced-weights-srat"),
    ("DONE's r under `mnist10k_hard`", "dones-r-under-mnist10k_hard"),
    ("How to add ...", "how-to-add-"),
])
def test_slugs_are_githubs(heading, expected):
  assert slug(heading) == expected


def test_the_checker_reports_broken_links_anchors_and_configs(tmp_path):
  (tmp_path / "other.md").write_text("# Other page\n\n## A real section\n"
                                     "## A real section\n", encoding="utf-8")
  (tmp_path / "figures").mkdir()
  (tmp_path / "figures" / "a.png").write_bytes(b"png")
  page = tmp_path / "page.md"
  page.write_text("""# Page
[fine](other.md#a-real-section) [second](other.md#a-real-section-1)
![fine](figures/a.png) [here](#page) [web](https://example.com/missing.md)
[gone](missing.md) [no anchor](other.md#no-such-section) [self](#nowhere)
[moved figure](docs/figures/a.png) [outside](../elsewhere.md)
`[in code](missing_too.md)`

```bash
python -m official.train --config=configs/at.py:digits   # fine
python -m official.train --config=configs/at.py:nope     # bad preset
```
    python -m tools.protocol --methods=at,mail:trades,mail:nope --preset=mnist10k_hard \\
        --paired=gone
The arms: `configs/srat.py:mnist10k_lt,at_cb` and `configs/missing.py:digits`.
""", encoding="utf-8")
  assert broken_links(str(page), root=str(tmp_path)) == [
      "page.md: (missing.md) no such file",
      "page.md: (other.md#no-such-section) no heading with anchor "
      "#no-such-section in other.md",
      "page.md: (#nowhere) no heading with anchor #nowhere in page.md",
      "page.md: (docs/figures/a.png) no such file",
      "page.md: (../elsewhere.md) leaves the repository",
  ]
  problems = broken_configs(str(page), root=str(tmp_path))
  assert len(problems) == 4, problems
  assert any("--config=configs/at.py:nope" in p
             and "unknown config preset 'nope'" in p for p in problems)
  assert any("mail:nope" in p and "configs/mail.py:nope,mnist10k_hard" in p
             and "unknown config preset 'nope'" in p for p in problems)
  assert any("configs/gone.py" in p and "no such file" in p for p in problems)
  assert any("configs/missing.py:digits" in p and "no such file" in p
             for p in problems)
