"""Regenerate the notebooks from this file (kept as code so diffs stay readable):
    python notebooks/_make.py"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent


def nb(cells: list[tuple[str, str]]) -> nbf.NotebookNode:
    n = nbf.v4.new_notebook()
    n.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    n.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src) for kind, src in cells]
    return n


custom = nb([
    ("md", "# Compose a custom graph and run one course\n\nThe presets are built with the same builder you use. Here we take the `minimal` session graph (client and counselor), add our own counselor-side node, check the double-blind view it gets, drop the between-session events from the course, and run one 2-session course. The model comes from the environment variable `THERASIM_MODEL` (e.g. `vllm:Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1`); unset, it is the embedded model (SmolLM2-135M on CPU: slow and not clinically meaningful)."),
    ("code", "import json, os, tempfile\nimport therasim\nfrom therasim.graphs import preset, CourseGraphBuilder\nfrom therasim.traces import parse_model_spec\n\n# the model server: THERASIM_MODEL=openai:MODEL@URL or vllm:MODEL@URL (unset: the embedded model)\nMODEL = parse_model_spec(os.environ.get('THERASIM_MODEL', 'embedded')).model_dump(mode='json')\nsession = preset('minimal')\nprint(MODEL['provider'], session.describe()['order'])"),
    ("md", "A node is a function `(view, ctx) -> state update`. Its *view* holds only what its side may see: a counselor-side node cannot read the client's hidden profile or inner state (asking raises `BlindViewError`)."),
    ("code", "from therasim.state import BlindViewError\n\nseen = []\n\ndef empathy_check(view, ctx):\n    reply = view['current'].get('counselor_text') or ''\n    try:\n        view['inner']\n    except BlindViewError as e:\n        seen.append(str(e))\n    words = ('sounds', 'feel', 'hear', 'understand')\n    return {'current': {'review': {'empathic_words': [w for w in words if w in reply.lower()]}}}\n\nsession.add_node('empathy_check', empathy_check, side='counselor', after='counselor')\ncourse = CourseGraphBuilder(session).without('events')\nprint(course.describe()['order'])\nprint(session.mermaid()[:400])"),
    ("code", "SESSIONS = int(os.environ.get('THERASIM_NB_SESSIONS', '2'))  # the embedded-model test runs one, to save CPU time\nout = tempfile.mkdtemp(prefix='therasim-nb-')\nres = therasim.run(\n    {'models': {'default': MODEL}, 'course': {'preset': 'minimal', 'sessions': SESSIONS, 'max_turns': 1, 'events': False}, 'seed': 3},\n    sample=1, out=out, session_builder=session,\n)\nprint(json.dumps(res.summary(), indent=1))\nassert res.ok"),
    ("code", "client = therasim.overview(res.run_dir)['courses'][0]['client_id']\nfor t in therasim.timeline(res.run_dir, client, 1):\n    print(f\"{t['speaker']:>9}: {t['text']}\")\nprint('blind view check:', seen[:1])\nassert seen, 'the counselor-side node should have been refused the inner state'"),
    ("code", "state = therasim.turn_state(res.run_dir, client, 1, 1, session_builder=session)\nprint([t['speaker'] for t in state['exchange']], state['exchange'][-1].get('review'))"),
])

cohort = nb([
    ("md", "# Run a small cohort, inspect it, fork a turn and plot\n\nTwo sampled clients, two sessions each, on the model named by `THERASIM_MODEL` (`openai:MODEL@URL` or `vllm:MODEL@URL`; unset: the embedded model). The same functions back the CLI (`therasim run / inspect / fork / plot`)."),
    ("code", "import json, os, tempfile\nimport therasim\nfrom therasim.traces import parse_model_spec\n\nMODEL = parse_model_spec(os.environ.get('THERASIM_MODEL', 'embedded')).model_dump(mode='json')\nCLIENTS = int(os.environ.get('THERASIM_NB_CLIENTS', '2'))  # the embedded-model test runs one, to save CPU time\nout = tempfile.mkdtemp(prefix='therasim-cohort-')\nres = therasim.run({'models': {'default': MODEL}, 'course': {'preset': 'lean', 'sessions': 2, 'max_turns': 1}, 'seed': 5}, sample=CLIENTS, out=out)\nprint(json.dumps(res.summary(), indent=1))\nassert res.ok"),
    ("md", "## Inspect: course overview, then one session turn by turn"),
    ("code", "ov = therasim.overview(res.run_dir)\nfor c in ov['courses']:\n    for s in c['sessions']:\n        print(c['client_id'], 'session', s['session'], s['modality'], 'PHQ-9', s['phq9'], 'GAD-7', s['gad7'], 'risk peak', s['risk_peak'], 'ended', s['end_reason'])\nclient = ov['courses'][0]['client_id']\nfor t in therasim.timeline(res.run_dir, client, 2):\n    print(t['turn'], t['speaker'], (t['emotion'] or {}).get('main'), (t['risk'] or {}).get('level'), '|', t['text'][:80])\n    for m in t['recalled']:\n        print('    recalled', m['score'], m['text'][:60])"),
    ("md", "## Fork: the same state before turn 1 of session 2, with the client more distressed"),
    ("code", "branch = therasim.fork(res.run_dir, client, 2, 1, sets={'inner.distress': 10}, branch='distress10')\nprint(branch['kind'], branch['branch'], branch['changes'])\nfor t in branch['turns']:\n    print(f\"{t['speaker']:>9}: {t['text'][:100]}\")\nassert any(b['branch'] == 'distress10' for b in therasim.overview(res.run_dir)['courses'][0]['sessions'][1]['branches'])"),
    ("md", "## Plot"),
    ("code", "from IPython.display import Image, display\npaths = therasim.plot_run(res.run_dir)\nprint([p.name for p in paths])\ndisplay(Image(filename=str(paths[0])))"),
])

nbf.write(custom, HERE / "01_custom_graph.ipynb")
nbf.write(cohort, HERE / "02_cohort_inspect_fork_plot.ipynb")
print("wrote", [p.name for p in sorted(HERE.glob("*.ipynb"))])
