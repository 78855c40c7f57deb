"""The effective-first schedule: its decisions on small tables, and on the smoke pipeline the
same answers as the exhaustive schedule, with cached reruns that redo nothing."""

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, SMOKE, smoke_reference_run, snakemake
from kdconcepts import schedule as S

FG = {i: np.array([[True, False], [False, False]]) for i in "abcdef"}
GOOD = np.array([[-5.0, -1.0], [-1.0, -1.0]]).ravel()   # foreground lower entropy: passes the rule
BAD = np.array([[-1.0, -5.0], [-5.0, -5.0]]).ravel()    # background lower: fails


def _step(**maps):
    return pd.DataFrame([{"image_id": i, "usable": m is not None,
                          "entropy": (m if m is not None else np.full(4, np.nan)).tolist()}
                         for i, m in maps.items()])


def test_candidates_extend_without_changing_their_start():
    assert list(S.candidate_indices(100, 5, seed=3)) == list(S.candidate_indices(100, 20, seed=3)[:5])
    assert list(S.candidate_indices(100, 5, seed=3)) != list(S.candidate_indices(100, 5, seed=4))
    with pytest.raises(ValueError, match="only 10 images"):
        S.candidate_indices(10, 11, seed=0)


def test_late_and_early_checkpoints_split_the_schedule():
    paper = [0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 70, 90, 110, 130, 150]
    assert S.late_epochs(paper, 0.75) == [40, 50, 70, 90, 110, 130, 150]
    assert S.early_epochs(paper, 0.75) == [0, 2, 5, 10, 15, 20, 25, 30]


class _FakeMaps:
    """Stands for kdconcepts.walk.SeedMaps: fixed maps per (network, epoch, image), and a record of
    what the walk asked for."""

    def __init__(self, maps, unusable=()):
        self.table, self.unusable, self.asked = maps, set(unusable), []

    def maps(self, network, epoch, ids):
        self.asked.append((network, epoch, tuple(ids)))
        return _step(**{i: self.table[network, epoch].get(i, GOOD) for i in ids})

    def usable(self, network, epoch, ids):
        return {i: (network, epoch, i) not in self.unusable for i in ids}


def test_each_comparison_keeps_its_own_candidates():
    """An image failing for one student stays in the running for the other student's comparison;
    the shared baseline is quantified for whichever comparison still needs it (issue 31, item 7)."""
    from kdconcepts.walk import _late_walk, _round_verdict

    pairs = [("student", "baseline"), ("logit", "baseline")]
    maps = _FakeMaps({("student", 2): {}, ("logit", 2): {"a": BAD}, ("baseline", 2): {"c": BAD},
                      ("student", 1): {"b": BAD}, ("logit", 1): {}, ("baseline", 1): {}},
                     unusable={("logit", 0, "d")})
    alive = _late_walk(maps, list("abcd"), pairs, [1, 2], FG, 2, "effective")
    # a fails for logit at 2, c for the baseline at 2 (both comparisons), b for student at 1.
    assert alive == {("student", "baseline"): ["a", "d"], ("logit", "baseline"): ["b", "d"]}
    asked = {(n, e): ids for n, e, ids in maps.asked}
    assert asked["logit", 1] == ("b", "d") and asked["student", 1] == ("a", "b", "d")
    assert asked["baseline", 1] == ("a", "b", "d")  # a for the student, b for logit
    verdict = _round_verdict(maps, 0, [0, 1, 2, 3], list("abcd"), alive, [0], samples=8)
    effective = verdict[verdict["effective"]].groupby("comparison")["image_id"].apply(list).to_dict()
    assert effective == {"student": ["a", "d"], "logit": ["b"]}
    assert verdict.set_index(["comparison", "image_id"]).loc[("logit", "d"), "reason"] == "sigma_f = 0 for logit at epoch 0"
    # A comparison with no survivor in a round: nothing to check for it, every candidate said why.
    none = _late_walk(_FakeMaps({**maps.table, ("logit", 2): {i: BAD for i in "abcd"}}), list("abcd"), pairs[1:],
                      [1, 2], FG, 2, "effective")
    assert none == {pairs[1]: []}
    verdict = _round_verdict(_FakeMaps(maps.table), 1, [4, 5, 6, 7], list("abcd"), none, [0], samples=8)
    assert not verdict["effective"].any() and set(verdict["reason"]) == {"failed the rule at a late checkpoint"}
    # Adding a comparison leaves the others' walk as it was.
    alone = _late_walk(_FakeMaps(maps.table), list("abcd"), pairs[:1], [1, 2], FG, 2, "effective")
    assert alone == {pairs[0]: alive[pairs[0]]}


def test_verdicts_say_why_an_image_is_not_effective():
    first = S.verdict_table(["a", "b", "c"], [0, 1, 2], ["a", "c"],
                            {"student": {0: {"a"}, 1: {"a", "c"}}, "baseline": {0: {"a", "c"}, 1: {"a", "c"}}})
    assert first["effective"].tolist() == [True, False, False]
    assert first["reason"].tolist()[1:] == ["failed the rule at a late checkpoint",
                                            "sigma_f = 0 for student at epoch 0"]


# --- on the smoke pipeline ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return smoke_reference_run(tmp_path_factory)


def _with(tmp_path, **changes) -> str:
    cfg = yaml.safe_load((ROOT / SMOKE).read_text())
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def _ran(stdout: str) -> list[tuple[str, str]]:
    """(rule, output) of every job a run executed."""
    return re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):\n\s+(?:input: .*\n\s+)?output: (.+)$",
                      stdout, flags=re.M)


REJECTIONS = "tests/overlays/rejections.yaml"


@pytest.mark.slow
def test_exhaustive_and_effective_first_give_the_same_answers_where_candidates_fail_the_rule(smoke, tmp_path):
    """On a config where about half the candidates fail the paper's rule, effective-first (which
    drops them at the late checkpoints) and exhaustive (every candidate at every checkpoint) give
    the same tables. A schedule that skipped the rule would evaluate other images."""
    reference, _, ran = smoke
    assert ran.returncode == 0
    runs = {}
    for name, overlays in (("effective_first", [REJECTIONS]),
                           ("exhaustive", [REJECTIONS, "tests/overlays/exhaustive.yaml"])):
        repo = runs[name] = tmp_path / name
        shutil.copytree(reference, repo, symlinks=True)
        # The trained networks are kept; everything from the schedule on is made anew.
        shutil.rmtree(repo / "results/.maps")
        for path in repo.joinpath("results/smoke").iterdir():
            if path.name.startswith("seed_"):
                for part in path.iterdir():
                    if part.name not in ("train", "features"):
                        shutil.rmtree(part)
            elif path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        run = snakemake(repo, "--cores", "2", "--configfile", SMOKE, *overlays)
        assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
        assert not {"teacher", "baseline", "distilled_student"} & {r for r, _ in _ran(run.stdout + run.stderr)}
    first, exhaustive = runs["effective_first"], runs["exhaustive"]
    rejected = 0
    for seed in (0, 1):
        rounds = pd.read_csv(first / f"results/smoke/seed_{seed}/quantify/conv/rounds.csv")
        failed = rounds[rounds["reason"] == "failed the rule at a late checkpoint"]
        rejected += len(failed)
        chosen = pd.read_csv(first / f"results/smoke/seed_{seed}/quantify/conv/chosen.csv")
        assert not set(failed["image_id"]) & set(chosen["image_id"])
        images = pd.read_csv(exhaustive / f"results/smoke/seed_{seed}/tables/images.csv")
        assert list(dict.fromkeys(images["image_id"])) == chosen["image_id"].tolist()
    assert rejected >= 3, rejected  # the rule really rejects here (5 of 9 examined when measured)
    compared = 0
    for table in ("metrics", "per_image", "images", "hypotheses"):  # (selection.csv counts the
        # candidates each schedule examined, which differ by design)
        for folder in ("seed_0/tables", "seed_1/tables", "tables"):
            path = f"results/smoke/{folder}/{table}.csv"
            if (first / path).exists():
                pd.testing.assert_frame_equal(pd.read_csv(first / path), pd.read_csv(exhaustive / path),
                                              check_exact=True, obj=path)
                compared += 1
    assert compared == 12  # four tables per seed and pooled
    # ... and the exhaustive schedule quantified more maps for the same answers.
    work = {name: pd.read_csv(root / "results/smoke/tables/work.csv")["sample_passes"].sum()
            for name, root in runs.items()}
    assert work["effective_first"] < work["exhaustive"]


def _quantified(run: subprocess.CompletedProcess, repo) -> dict[tuple[str, int], int]:
    """(network folder, epoch) -> images the run's quantify jobs made maps of (from their logs)."""
    made = {}
    for log in repo.glob("logs/results/smoke/seed_*/quantify/conv.log"):
        for path, count in re.findall(r"quantify (\S+) layer conv: (\d+) images", log.read_text()):
            key = (path.split("/train/")[1].rsplit("/", 1)[0], path.rsplit("/", 1)[1])
            made[key] = made.get(key, 0) + int(count)
    return made


@pytest.mark.slow
def test_nothing_changed_nothing_reruns_and_more_images_make_only_the_new_maps(smoke, tmp_path):
    reference, _, ran = smoke
    assert ran.returncode == 0
    repo = tmp_path / "repo"
    shutil.copytree(reference, repo, symlinks=True)
    again = snakemake(repo, "-n", "--cores", "2", "--configfile", SMOKE)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
    training = ("teacher", "baseline", "distilled_student")
    for log in repo.glob("logs/results/smoke/seed_*/quantify/conv.log"):
        log.unlink()  # (the reference run's lines)

    # One more image, found in the candidates already examined: its early and teacher maps are
    # made, and no late checkpoint is quantified again (the maps on disk are read back).
    one_more = _with(tmp_path, **{"metrics.effective": 5})
    run = snakemake(repo, "--cores", "2", "--configfile", one_more)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    jobs = {rule for rule, _ in _ran(run.stdout + run.stderr)}
    assert not jobs & set(training) and {"quantify", "metrics", "pool"} <= jobs, jobs
    made = _quantified(run, repo)
    assert made and {epoch for _, epoch in made} == {"epoch_000.pt", "final.pt"}, made  # 1 and 2 are late
    assert sum(made.values()) == 2 * (2 * 1 + 1), made  # per seed: 1 image x 2 nets x 1 early + teacher
    for seed in (0, 1):
        images = pd.read_csv(repo / f"results/smoke/seed_{seed}/tables/images.csv")
        assert images["image_id"].nunique() == 5

    # More images than the candidates examined hold: only the new candidates' late maps are made.
    for log in repo.glob("logs/results/smoke/seed_*/quantify/conv.log"):
        log.unlink()
    more = _with(tmp_path, **{"quantify.candidates": 9, "metrics.effective": 7})
    run = snakemake(repo, "--cores", "2", "--configfile", more)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert not {rule for rule, _ in _ran(run.stdout + run.stderr)} & set(training)
    late = {key: n for key, n in _quantified(run, repo).items() if key[1] in ("epoch_001.pt", "epoch_002.pt")}
    assert late and all(n <= 2 * 3 for n in late.values()), late  # the 3 new candidates, 2 seeds
    settled = snakemake(repo, "-n", "--cores", "2", "--configfile", more)
    assert "Nothing to be done" in settled.stdout + settled.stderr, settled.stdout[-3000:]


@pytest.mark.slow
def test_adding_the_logit_student_leaves_the_distilled_students_rows_unchanged(smoke, tmp_path):
    """Each comparison has its own first E effective images (issue 31, item 7): config/extended.yaml
    (the logit student as well) on the smoke run gives the distilled student's rows as they were."""
    reference, _, ran = smoke
    assert ran.returncode == 0
    repo = tmp_path / "repo"
    shutil.copytree(reference, repo, symlinks=True)
    run = snakemake(repo, "--cores", "2", "--configfile", SMOKE, "config/extended.yaml")
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    jobs = {rule for rule, _ in _ran(run.stdout + run.stderr)}
    assert "logit_student" in jobs and not {"teacher", "baseline", "distilled_student"} & jobs, jobs

    def rows(root, table, column):
        frame = pd.read_csv(root / f"results/smoke/{table}.csv")
        return frame[frame[column] == "distilled_student"].reset_index(drop=True)

    with_logit = pd.read_csv(repo / "results/smoke/tables/hypotheses.csv")
    assert set(with_logit["student"]) == {"distilled_student", "logit_student"}
    pd.testing.assert_frame_equal(rows(repo, "tables/hypotheses", "student"),
                                  rows(reference, "tables/hypotheses", "student"))
    for seed in (0, 1):
        for table in ("images", "metrics"):
            pd.testing.assert_frame_equal(rows(repo, f"seed_{seed}/tables/{table}", "comparison"),
                                          rows(reference, f"seed_{seed}/tables/{table}", "comparison"))
