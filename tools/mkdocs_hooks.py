"""MkDocs hook of mkdocs.yml: the site's home page is README.md, its developer page BUILD.md.

docs/index.md and docs/developer.md are stubs whose text this hook replaces by the repository
root's README.md and BUILD.md, so each document has one copy. Links are rewritten for the site:
in those two files `docs/X.md` becomes `X.md`; in every page `BUILD.md` / `../BUILD.md` becomes
`developer.md` and `README.md` / `../README.md` becomes `index.md`. `mkdocs build --strict`
(tools/test.sh) then fails on any link that still points nowhere.
"""

import os
import re

_FROM_ROOT = {"index.md": "README.md", "developer.md": "BUILD.md"}
_LINK = re.compile(r"\]\((?P<target>[^)\s#]*)(?P<anchor>#[^)\s]*)?\)")
_RENAMED = {"BUILD.md": "developer.md", "README.md": "index.md"}


def _rewrite(markdown, from_root):
  def sub(match):
    target, anchor = match.group("target"), match.group("anchor") or ""
    if from_root and target.startswith("docs/"):
      target = target[len("docs/") :]
    elif not from_root and target.startswith("../"):
      target = _RENAMED.get(target[3:], target)
    target = _RENAMED.get(target, target)
    return f"]({target}{anchor})"

  return _LINK.sub(sub, markdown)


def on_page_markdown(markdown, page, config, files):  # pylint: disable=unused-argument
  source = _FROM_ROOT.get(page.file.src_uri)
  if source:
    root = os.path.dirname(config.config_file_path)
    with open(os.path.join(root, source), encoding="utf-8") as f:
      markdown = f.read()
  return _rewrite(markdown, from_root=bool(source))
