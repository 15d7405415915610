"""RUN, prefix templates and ``exp.run``'s settings (docs/runs.md)."""

import os
import subprocess
import sys
import textwrap
import threading
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ml_dash
from ml_dash import (
    RUN,
    ConfigurationError,
    Experiment,
    ExperimentError,
    TemplateFieldError,
    list_experiments,
    load,
)
from ml_dash.paths import parse_prefix

FIXED = datetime(2026, 3, 1, 12, 34, 56)


def run_script(path, *args, cwd=None):
    done = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- templates at Experiment() -------------------------------------------------------------

def test_a_now_template_expands_once_into_a_concrete_prefix_and_folder(dash_root):
    exp = Experiment(prefix="alice/proj/{now:%Y-%m-%d/%H-%M-%S}", dash_root=dash_root, now=FIXED)
    assert exp.prefix == exp.run.prefix == "alice/proj/2026-03-01/12-34-56"
    assert (exp.owner, exp.project, exp.name) == ("alice", "proj", "12-34-56")
    assert (exp.run.owner, exp.run.project, exp.run.name) == ("alice", "proj", "12-34-56")
    assert exp.path == os.path.join(os.path.realpath(dash_root), "alice/proj/2026-03-01/12-34-56")
    with exp.run:
        exp.metrics.log(x=1)
    assert load("alice/proj/2026-03-01/12-34-56", dash_root=dash_root).metrics.column("x").tolist() == [1.0]


def test_fields_of_the_settings_and_their_formats(dash_root):
    exp = Experiment(prefix="{user}/p/{date}.{datetime_str}/{job_counter:03d}", user="bob",
                     now=FIXED, job_counter=7, dash_root=dash_root)
    assert exp.prefix == "bob/p/20260301.20260301.123456/007"
    spelled = Experiment(prefix="{RUN.user}/p/{EXP.date}", user="bob", now=FIXED, dash_root=dash_root)
    assert spelled.prefix == "bob/p/20260301"
    braces = Experiment(prefix="a/{{x}}", dash_root=dash_root)
    assert braces.prefix == "a/{x}"
    literal = Experiment(prefix="a/{user}", user="b{c}", dash_root=dash_root)
    assert literal.prefix == "a/b{c}"  # a user's value is text, not a template
    nested = Experiment(prefix="{project}/x", project="{user}/p", user="u", dash_root=dash_root)
    assert nested.prefix == "u/p/x"


def test_the_job_counter_gives_each_experiment_of_a_launch_its_own_number(dash_root):
    RUN.job_counter = 1
    first = Experiment(prefix="a/sweep/{job_counter:03d}", dash_root=dash_root)
    second = Experiment(prefix="a/sweep/{job_counter:03d}", dash_root=dash_root)
    Experiment(prefix="a/sweep/literal", dash_root=dash_root)  # uses no number, takes none
    third = Experiment(prefix="a/sweep/x", dash_root=dash_root)
    third.run.prefix = "a/sweep/{job_counter:03d}"            # taken when a template uses it
    assert (first.name, second.name, third.name) == ("001", "002", "003")
    assert (first.run.job_counter, third.run.job_counter) == (1, 3)
    assert Experiment(prefix="a/sweep/none", dash_root=dash_root).run.job_counter is None
    assert RUN.job_counter == 4
    with pytest.raises(ConfigurationError):
        Experiment(prefix="a/sweep/{job_counter}/{nope}", dash_root=dash_root)
    with pytest.raises(ConfigurationError):
        Experiment(prefix="a/sweep/{nope}", dash_root=dash_root)
    assert RUN.job_counter == 4  # a refused template takes no number


def test_experiments_made_in_threads_take_distinct_numbers(dash_root):
    RUN.job_counter = 1
    names = []

    def make():
        for _ in range(25):
            names.append(Experiment(prefix="a/t/{job_counter}", dash_root=dash_root).name)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(names, key=int) == [str(n) for n in range(1, 101)]


def test_an_id_field_is_a_launch_id_and_every_started_run_gets_one(dash_root):
    exp = Experiment(prefix="a/p/{id}", dash_root=dash_root)
    assert isinstance(exp.run.id, int) and exp.name == str(exp.run.id) and len(exp.name) == 18
    plain = Experiment(prefix="a/plain", dash_root=dash_root)
    assert plain.run.id is None
    with plain.run:
        assert isinstance(plain.id, int) and plain.id == plain.run.id
    assert plain.run.id != exp.run.id


def test_experiment_without_a_prefix_takes_run_prefix(dash_root):
    RUN.prefix = "{user}/proj/{now:%Y}/{job_counter:02d}"
    RUN.user, RUN.now, RUN.job_counter = "carol", FIXED, 4
    exp = Experiment(dash_root=dash_root)
    assert exp.prefix == "carol/proj/2026/04"


def test_the_environment_sets_the_default_prefix_and_user(tmp_path):
    script = tmp_path / "env.py"
    script.write_text("from ml_dash import Experiment\nprint(Experiment(dash_root='d').prefix)\n")
    env = dict(os.environ, ML_DASH_PREFIX="{user}/env/{job_counter:03d}", ML_DASH_USER="frank")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "frank/env/001"
    env["ML_DASH_PREFIX"] = "frank/{nope}"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 1 and "prefix template 'frank/{nope}': unknown field" in done.stderr


def test_the_default_template_names_the_run_after_the_script(tmp_path):
    project = tmp_path / "project"
    (project / "experiments").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    script = project / "experiments" / "train.py"
    script.write_text(textwrap.dedent("""
        import sys
        from ml_dash import RUN, Experiment
        RUN.entry = __file__
        RUN.user = "dana"
        with Experiment(dash_root=sys.argv[1]).run as exp:
            exp.metrics.log(x=1)
        print(exp.prefix)
    """))
    prefix = run_script(script, str(tmp_path / "dash"), cwd=tmp_path).strip()
    now = datetime.now()
    owner, project_name, year, month_day, *stem, clock, counter = prefix.split("/")
    assert (owner, project_name, stem, counter) == ("dana", "scratch", ["experiments", "train"], "001")
    assert year == f"{now:%Y}" and len(month_day) == 5 and len(clock) == 8
    assert [r["prefix"] for r in list_experiments(str(tmp_path / "dash"))] == [prefix]


def test_find_project_root_and_path_stem(tmp_path):
    (tmp_path / "repo" / "src" / "deep").mkdir(parents=True)
    (tmp_path / "repo" / "setup.cfg").write_text("")
    script = tmp_path / "repo" / "src" / "deep" / "job.py"
    script.write_text("")
    assert ml_dash.run.find_project_root(script) == str(tmp_path / "repo")
    assert ml_dash.run.find_project_root(script.parent) == str(tmp_path / "repo")
    run = RUN(prefix="a/{path_stem}", entry=str(script))
    assert run.prefix == "a/src/deep/job" and run.project_root == str(tmp_path / "repo")
    outside = RUN(prefix="a/{path_stem}", entry=str(script), project_root=str(tmp_path / "other"))
    assert outside.prefix == "a/job"  # an entry outside its root is named by itself


# -- fresh run per launch, or append -----------------------------------------------------

LAUNCH = textwrap.dedent("""
    import sys
    from ml_dash import Experiment
    with Experiment(prefix=sys.argv[2], dash_root=sys.argv[1]).run as exp:
        exp.metrics("train").log(loss=0.5)
""")


def test_same_prefix_appends_while_a_now_template_gives_each_launch_a_fresh_run(tmp_path):
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH)
    dash_root = str(tmp_path / "dash")
    for _ in range(2):
        run_script(script, dash_root, "alice/proj/same")
        run_script(script, dash_root, "alice/fresh/{now:%Y-%m-%d/%H-%M-%S-%f}")
    assert len(load("alice/proj/same", dash_root=dash_root).metrics("train")) == 2
    fresh = list_experiments(dash_root, "alice/fresh/**")
    assert len(fresh) == 2 and all(r["points"] == 1 for r in fresh)


# -- exp.run.prefix and its setter ---------------------------------------------------------

def test_the_prefix_can_be_set_until_the_run_starts(dash_root):
    exp = Experiment(prefix="alice/proj/draft", dash_root=dash_root)
    exp.run.prefix = "iclr/{EXP.name}/{owner}"
    assert exp.prefix == "iclr/draft/alice" and exp._folder_path == "iclr/draft/alice"
    exp.run.folder = "iclr/final"
    assert exp.folder == exp.run.folder == "iclr/final"
    with exp.run:
        assert exp._is_open
        exp.metrics.log(x=1)
        with pytest.raises(RuntimeError, match="already started") as refused:
            exp.run.prefix = "other/place"
        assert isinstance(refused.value, ExperimentError)
        assert exp.prefix == "iclr/final"
    assert not exp._is_open
    with pytest.raises(ExperimentError):  # a closed run appends when restarted: it keeps its store
        exp.run.prefix = "other/place"
    assert not os.path.exists(os.path.join(dash_root, "alice")) and not os.path.exists(
        os.path.join(dash_root, "other"))
    assert len(load("iclr/final", dash_root=dash_root).metrics) == 1


def test_a_refused_prefix_leaves_the_old_one(dash_root):
    with Experiment(prefix="alice/proj", dash_root=dash_root).run:
        pass
    exp = Experiment(prefix="alice/other", dash_root=dash_root)
    with pytest.raises(ConfigurationError, match="inside the run 'alice/proj'"):
        exp.run.prefix = "alice/proj/inner"
    with pytest.raises(ConfigurationError, match="'a/{oops'"):
        exp.run.prefix = "a/{oops"
    assert exp.prefix == exp.run.prefix == "alice/other"
    assert exp.path.endswith(os.path.join("alice", "other"))


def test_segments_are_read_from_the_prefix_not_set(dash_root):
    exp = Experiment(prefix="alice/proj/exp", dash_root=dash_root)
    with pytest.raises(AttributeError, match="set run.prefix"):
        exp.run.name = "other"
    assert exp.name == "exp"


def test_unknown_keywords_are_still_refused(dash_root):
    with pytest.raises(TypeError, match="'colour'.*user"):
        Experiment(prefix="a/b", dash_root=dash_root, colour="red")
    with pytest.raises(TypeError, match="colour"):
        RUN(colour="red")


# -- bad templates ----------------------------------------------------------------------

@pytest.mark.parametrize("template, words", [
    ("a/{nope}/b", ["unknown field {nope}", "{now}"]),
    ("a/{EXP.invalid_var}", ["unknown field {invalid_var}"]),
    ("a/{0}", ["'0' is not a field name"]),
    ("a/{now.year}", ["'now.year' is not a field name"]),
])
def test_an_unknown_field_is_a_configuration_and_attribute_error(dash_root, template, words):
    with pytest.raises(TemplateFieldError) as refused:
        Experiment(prefix=template, dash_root=dash_root)
    assert isinstance(refused.value, ConfigurationError) and isinstance(refused.value, AttributeError)
    for word in [repr(template), *words]:
        assert word in str(refused.value)
    assert not os.path.exists(dash_root)


@pytest.mark.parametrize("template, settings, words", [
    ("a/{now:%Y", {}, ["unmatched '{'"]),
    ("a/{now", {}, ["expected '}'"]),
    ("a/b}", {}, ["Single '}'"]),
    ("a/{user}/b", {"user": "/"}, ["field {user} expands to '/'"]),
    ("a/{user}/b", {"user": ".."}, ["field {user} expands to '..'"]),
    ("a/{user}", {"user": "x/../../etc"}, ["'x/../../etc'"]),
    ("a/{entry}", {"entry": "/tmp/train.py"}, ["field {entry} expands to '/tmp/train.py'"]),
    ("a/{now:/%Y}", {"now": FIXED}, ["field {now:/%Y}"[:10], "'/2026'"]),
    ("a{user}", {"user": "b"}, ["expands to 'ab'", "at least 'owner/project'"]),
    ("a/{user}/b", {"user": ""}, ["expands to 'a//b'"]),
    ("a/{user:03d}", {}, ["field {user:03d} cannot format its str value"]),
    ("a/{prefix}", {}, ["field {prefix} refers to itself"]),
    ("a/{name}", {}, ["field {name} has no value here"]),
    ("a/{date}", {"now": "today"}, ["field {date}", "RUN.now must be a datetime, got str"]),
    ("a/{project_root}", {"project_root": None, "entry": None, "path_stem": "x"},
     ["field {project_root} has no value"]),
])
def test_a_bad_template_is_refused_at_the_call_naming_it(dash_root, template, settings, words):
    with pytest.raises(ConfigurationError) as refused:
        Experiment(prefix=template, dash_root=dash_root, **settings)
    for word in [repr(template), *words]:
        assert word in str(refused.value)
    assert not os.path.exists(dash_root)


def test_setting_a_bad_class_template_is_refused_at_once_and_keeps_the_old_one():
    before = RUN.prefix
    with pytest.raises(TemplateFieldError, match=r"'x/\{nmae\}'.*unknown field \{nmae\}"):
        RUN.prefix = "x/{nmae}"
    with pytest.raises(ConfigurationError, match="unmatched"):
        RUN.job_name = "{now:%H"
    with pytest.raises(ConfigurationError, match="'a//b'"):
        RUN.prefix = "a//b"
    assert RUN.prefix == before


# -- the module and dxp ------------------------------------------------------------------

def test_run_is_one_object_and_module():
    import ml_dash.run as module
    from ml_dash.run import RUN as same

    assert same is RUN is ml_dash.RUN and module.RUN is RUN
    assert isinstance(Experiment(prefix="a/b").run, RUN)


DXP = textwrap.dedent("""
    import sys
    from ml_dash import RUN
    RUN.user = "erin"
    from ml_dash.auto_start import dxp
    assert not dxp._is_open  # importing writes nothing
    print(dxp.prefix)
    if sys.argv[1] == "with":
        with dxp.run:
            dxp.params.set(lr=0.001)
            dxp.metrics("train").log(loss=0.5, step=0)
    else:
        dxp.run.start()
        dxp.metrics("train").log(loss=0.5, step=0)  # left open: completed at exit
""")


@pytest.mark.parametrize("how", ["with", "left-open"])
def test_dxp_is_a_fresh_run_of_the_script(tmp_path, how):
    script = tmp_path / "scratch_job.py"
    script.write_text(DXP)
    prefix = run_script(script, how, cwd=tmp_path).strip()
    assert prefix.startswith("erin/scratch/") and "/scratch_job/" in prefix
    view = load(prefix, dash_root=str(tmp_path / ".dash"))
    assert view.status == "COMPLETED" and view.metrics("train").column("loss").tolist() == [0.5]
    view.close()


# -- properties --------------------------------------------------------------------------

PIECES = st.one_of(
    st.sampled_from(["/", ".", "..", "{", "}", "{{", "}}", "a", "-", "\\", ":"]),
    st.sampled_from(["{user}", "{now:%Y/%m}", "{now:/%d}", "{job_counter:03d}", "{path_stem}",
                     "{EXP.id}", "{name}", "{nope}", "{user!r}", "{job_name}", "{date}"]),
    st.text(alphabet="abc./", max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(PIECES, max_size=8), user=st.text(alphabet="ab./", max_size=4))
def test_a_template_either_gives_a_prefix_inside_dash_root_or_a_configuration_error(
        tmp_path_factory, pieces, user):
    template = "".join(pieces)
    try:
        run = RUN(prefix=template, user=user, now=FIXED, path_stem="s/t", job_counter=1)
    except ConfigurationError as exc:
        assert repr(template) in str(exc) or "invalid experiment prefix" in str(exc)
        return
    root = str(tmp_path_factory.getbasetemp())
    segments, path = parse_prefix(run.prefix, root)  # raises if the result escaped
    assert os.path.commonpath([root, path]) == root and all(s not in ("", ".", "..") for s in segments)


@settings(max_examples=200, deadline=None)
@given(user=st.text(alphabet="abcXYZ019-_ é", min_size=1, max_size=12).filter(
    lambda u: u.strip("/") and u not in (".", "..")),
    counter=st.integers(0, 10**6))
def test_expansion_agrees_with_str_format(user, counter):
    template = "{user}/proj/{now:%Y-%m-%d}/{job_counter:04d}"
    run = RUN(prefix=template, user=user, now=FIXED, job_counter=counter)
    assert run.prefix == template.format(user=user, now=FIXED, job_counter=counter)
