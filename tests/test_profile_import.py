"""Profile import: MindEval-format records (written for this test) become valid
therasim profiles with nothing dropped; Patient-Psi records too; loading a foreign
file directly names the importer; the profiles CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from therasim.cli import app
from therasim.profile_import import MINDEVAL_ATTRIBUTES, import_profiles
from therasim.profiles import load_profiles

DATA = Path(__file__).parent / "data" / "mindeval_profiles.jsonl"


def _leaves(obj: object) -> list[str]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _leaves(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _leaves(v)]
    return [str(obj)]


def test_mindeval_records_import_with_nothing_dropped():
    raw = [json.loads(line) for line in DATA.read_text().splitlines()]
    assert all(2400 <= len(r["member_narrative"]) <= 3300 for r in raw)
    profiles, problems = import_profiles("mindeval", DATA)
    assert problems == [] and len(profiles) == 2
    dana, tomasz = profiles
    assert dana.intake.name == "Dana" and dana.intake.age == 34 and dana.intake.gender == "woman"
    assert dana.intake.occupation == "logistics coordinator" and dana.intake.goals == ["Feel less on edge and have more room to breathe"]
    assert "panic attack in a shop" in dana.intake.presenting_problem
    assert tomasz.intake.age == 60  # "55-64" -> the middle of the range
    assert dana.hidden.conversation_style.startswith("Brief, practical answers") or "conversation_style" in dana.extra.get("_shortened", {}).get("hidden", {})
    for prof, rec in zip(profiles, raw, strict=True):
        # every source value is somewhere in the profile: a field, the client-visible details, or extra
        text = json.dumps(prof.model_dump(mode="json"), ensure_ascii=False)
        for key, value in rec["member_attributes"].items():
            assert str(value) in text, key
        assert prof.extra["member_attributes"] == rec["member_attributes"]
        assert prof.extra["member_narrative_thinking_trace"] == rec["member_narrative_thinking_trace"]
        # the narrative is kept whole: in the backstory, or cut there and whole in extra
        full = prof.extra.get("full", {}).get("hidden.backstory", prof.hidden.backstory)
        assert rec["member_narrative"] in full
        # attributes without a field of their own reach the client in its hidden profile
        for key in ("sleep_quality", "support_system", "living_situation", "attitude_towards_mindfulness"):
            assert str(rec["member_attributes"][key]) in prof.hidden.backstory
    assert "favourite music: folk" in dana.hidden.backstory  # unknown attributes are not dropped either
    assert set(MINDEVAL_ATTRIBUTES) <= set(raw[0]["member_attributes"])


def test_shortened_values_are_recorded():
    profiles, _ = import_profiles("mindeval", DATA)
    for p in profiles:
        for field, info in p.extra.get("_shortened", {}).items():
            assert info["full_chars"] > info["kept_chars"] and p.extra["full"][field]


def test_patient_psi_record(tmp_path):
    rec = {
        "id": "1-1", "type": ["reserved"],
        "history": "Lost his job at the factory last spring and has been hiding it from his wife by leaving home every morning as usual.",
        "helpless_belief": ["I am powerless."], "unlovable_belief": ["I am bound to be rejected."], "worthless_belief": ["I am a failure."],
        "intermediate_belief": "If I tell people, they will see I am useless.", "coping_strategies": "Keeps busy, avoids the topic.",
        "situation": "His wife asked how work was going at dinner.", "auto_thought": "She will leave me if she finds out.",
        "emotion": ["anxious", "ashamed"], "behavior": "Changed the subject and went to bed early.",
    }
    f = tmp_path / "psi.json"
    f.write_text(json.dumps([rec]))
    profiles, problems = import_profiles("patient-psi", f)
    assert problems == [] and len(profiles) == 1
    p = profiles[0]
    assert p.id == "patientpsi-1-1" and p.hidden.core_beliefs == ["I am powerless.", "I am bound to be rejected.", "I am a failure."]
    assert "reserved" in p.hidden.conversation_style and "She will leave me" in p.hidden.backstory
    assert p.extra["record"] == rec and "intake.age" in p.extra["_defaults"]


def test_loading_a_foreign_file_names_the_importer(tmp_path):
    ok, problems = load_profiles(DATA)
    assert ok == [] and len(problems) == 2
    assert "therasim profiles import mindeval" in str(problems[0])


def test_profiles_cli(tmp_path):
    out = tmp_path / "imported.jsonl"
    r = CliRunner().invoke(app, ["profiles", "import", "mindeval", str(DATA), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "imported 2 profile(s)" in r.stdout
    r = CliRunner().invoke(app, ["profiles", "validate", str(out)])
    assert r.exit_code == 0 and "2 valid, 0 invalid" in r.stdout
    r = CliRunner().invoke(app, ["profiles", "validate", str(DATA)])
    assert r.exit_code == 1 and "profiles import mindeval" in r.output
    r = CliRunner().invoke(app, ["profiles", "show", str(out)])
    assert r.exit_code == 0 and "Dana, 34" in r.stdout
    r = CliRunner().invoke(app, ["profiles", "show", str(out), "mindeval-002"])
    assert r.exit_code == 0 and json.loads(r.stdout)["intake"]["name"] == "Tomasz"
    r = CliRunner().invoke(app, ["profiles", "sample", "3", "--seed", "4"])
    assert r.exit_code == 0 and len([ln for ln in r.stdout.splitlines() if ln.strip()]) == 3
    # imported profiles run
    from therasim.runner import start_run

    rd, problems = start_run({"course": {"preset": "minimal"}}, profiles=out, out=tmp_path / "runs")
    assert problems == [] and (rd.root / "profiles.jsonl").exists()
