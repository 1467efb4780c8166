"""The README opens with the two commands (main job, tests) and CI runs the second one."""

from __future__ import annotations

import re

from conftest import ROOT


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.DOTALL)[:2]


def test_readme_opens_with_main_job_and_tests():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = text.index("```bash")
    assert text[:first_block].strip() == "# soundsearch"  # nothing before the two commands
    main_job, tests = _commands()
    assert "\n" not in main_job and "\n" not in tests
    assert "soundsearch index" in main_job and "soundsearch search" in main_job
    assert "pytest" in tests and "torch==2.13.0" in tests and "torch==2.13.0" in main_job


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _commands()[1] in ci.splitlines()
