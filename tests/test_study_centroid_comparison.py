"""The centroid_comparison study: records against library recomputations, the centroid-model fit, tables, figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from nwcorrupt.arch import MLP
from nwcorrupt import data, precision, predict, prototype, theory, train
from nwcorrupt.experiments import runner
from nwcorrupt.experiments.schema import ConfigError, parse_config
from nwcorrupt.experiments.studies import centroid_comparison as cc
from nwcorrupt.experiments.studies import common

TINY = dict(datasets=("digits",), n_train=200, n_test=200, noises=("additive",), ps=(0.5, 0.97), width=32,
            epochs=3, batch_size=50, learning_rate=1e-3, k=2, m=2, n_fit_points=0, n_draws=50)


@pytest.fixture(scope="module")
def ref_run():
    """One p_ref point of the tiny setting: (params, point, record metrics)."""
    params = cc.Params(**TINY)
    point = {"dataset": "digits", "noise": "additive", "p": 0.97}
    return params, point, cc.run_point(params, point)


def _record(point, metrics):
    return {"point": point, "metrics": metrics}


def test_record_accuracies_equal_library_recomputation(ref_run):
    params, point, rec = ref_run
    ds = cc._dataset(params, "digits")
    model = common.noise_model("additive", "example", ds.x_train)
    noisy = np.stack([np.asarray(model.apply(ds.x_train, 0.97, s)) for s in (0, 1)])
    # the study's recipe written out: networks in the standard parameterisation, every row once per epoch;
    # the kernels of the same MLP in the NTK parameterisation
    net_arch = MLP(3, "erf", W_std=1.0, b_std=0.0, parameterization="standard")
    arch = MLP(3, "erf", W_std=1.0, b_std=0.0)
    cfg = train.TrainConfig(arch=net_arch, width=32, num_classes=10, optimizer=train.Optimizer("adam", 1e-3),
                            loss="mse", batch_size=50, epochs=3, drop_last=False, seed=0)
    logits = np.asarray(train.train_ensemble(cfg, noisy, ds.y_train, ds.x_test, num_inits=2, quiet=True).test_logits)
    net = [float(np.mean(logits[k].mean(0).argmax(-1) == ds.y_test)) for k in range(2)]
    assert rec["accuracy"]["network"] == net
    onehot = np.eye(10)[ds.y_train]
    with precision.x64():
        ntk = [float(np.mean(np.asarray(predict.ntk_predict(arch, noisy[k].astype(np.float64), onehot,
                                                            ds.x_test.astype(np.float64), diag_reg=1e-6)).argmax(-1) == ds.y_test))
               for k in range(2)]
        ridge = theory.meanfield_ridge(arch, model, 0.97, ds.x_train.astype(np.float64), 1e-6)  # relative -> absolute
        mf = theory.meanfield_predict(arch, model, 0.97, ds.x_train.astype(np.float64), ds.y_train,
                                      ds.x_test.astype(np.float64), ridge=ridge, num_classes=10)
    assert rec["accuracy"]["ntk"] == pytest.approx(ntk, abs=1e-12)
    assert rec["accuracy"]["meanfield"] == [pytest.approx(float(np.mean(mf.argmax(-1) == ds.y_test)), abs=1e-12)]
    # the leading-order rule with clean class means, written out: argmax_i <x*, mu_i>
    mu = np.stack([ds.x_train[ds.y_train == i].astype(np.float64).mean(0) for i in range(10)])
    lead = (ds.x_test.astype(np.float64) @ mu.T).argmax(-1)
    assert rec["accuracy"]["rule_leading"] == [pytest.approx(float(np.mean(lead == ds.y_test)), abs=1e-12)]
    # the agreement pairs: network vs the leading rule, row by row
    net_pred = logits.mean(1).argmax(-1)
    assert rec["agreement"]["network~rule_leading"] == pytest.approx([float(np.mean(r == lead)) for r in net_pred])
    # the fit uses the same init-averaged logits: c is their std across the two sets (ddof = 1)
    s = prototype.centroid_scores(ds.x_test, ds.x_train, ds.y_train, num_classes=10)
    z = logits.mean(1)
    assert rec["centroid_model"]["fit"]["c"] == pytest.approx(float(z.std(axis=0, ddof=1).mean()), rel=1e-6)
    # least squares of the set-averaged logits on s, in closed form (simple linear regression)
    zbar, sv = z.mean(0).ravel(), s.ravel()
    a = np.cov(sv, zbar, bias=True)[0, 1] / np.var(sv)
    assert rec["centroid_model"]["fit"]["a"] == pytest.approx(a, rel=1e-5)
    assert rec["centroid_model"]["fit"]["b"] == pytest.approx(zbar.mean() - a * sv.mean(), rel=1e-5, abs=1e-7)
    assert rec["centroid_model"]["fit"]["A"] == pytest.approx(rec["centroid_model"]["fit"]["a"] / 0.03)


def test_stored_sample_reproduces_the_fit_and_the_model_curve(ref_run):
    params, point, rec = ref_run
    cm = rec["centroid_model"]
    assert cm["n_points"] == 200 and len(cm["sample"]["y"]) == 200  # n_fit_points = 0: every test point
    assert np.asarray(cm["sample"]["logits"]).shape == (2, 200, 10)
    refit = cc.refit(_record(point, rec))
    for key in ("a", "b", "c", "A", "r2"):  # stored values are rounded to 7 decimals
        assert refit[key] == pytest.approx(cm["fit"][key], rel=1e-4, abs=1e-6), key
    s, y = np.asarray(cm["sample"]["s"]), np.asarray(cm["sample"]["y"])
    mc = prototype.centroid_model_accuracy(cm["fit"], s, y, params.ps, n_draws=50, seed=0)
    np.testing.assert_allclose(cm["model_accuracy"]["monte_carlo"], mc, atol=2 / (200 * 50))
    # the analytic form by direct quadrature: P(true logit wins) = ∫ φ(z) Φ(z + a_eff / c)^(C−1) dz
    gap = cm["model_accuracy"]["score_gap"]
    for p, an in zip(params.ps, cm["model_accuracy"]["analytic"]):
        a_eff = cm["fit"]["A"] * (1 - p) * gap
        ref, _ = integrate.quad(lambda t: stats.norm.pdf(t) * stats.norm.cdf(t + a_eff / cm["fit"]["c"]) ** 9, -12, 12)
        assert an == pytest.approx(ref, abs=1e-8)


def test_mean_score_gap_by_hand():
    s = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    assert cc.mean_score_gap(s, np.array([0, 1])) == pytest.approx((1.0 + 1.5) / 2)


def _synthetic_record(dataset, noise, a=3.0, b=0.1, c=0.2, k=40, n=300, classes=10, seed=0):
    """A p_ref record whose logits follow the centroid model exactly (known a, b, c)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 0.2, (n, classes))
    y = rng.integers(0, classes, n)
    logits = a * s[None] + b + c * rng.standard_normal((k, n, classes))
    fit = prototype.fit_centroid_model(logits, s, 0.97)
    acc = {name: [0.5, 0.6] for name in cc.PREDICTORS}
    metrics = {
        "accuracy": acc,
        "agreement": {f"{x}~{z}": [0.9, 0.8] for x, z in cc.AGREEMENTS},
        "centroid_model": {
            "fit": fit,
            "n_points": n,
            "model_accuracy": cc.model_curves(fit, s, y, [0.9, 0.97, 1.0], n_draws=20, seed=0),
            "sample": {"index": list(range(n)), "y": y.tolist(), "s": s.tolist(), "logits": logits.tolist()},
        },
    }
    return {"point": {"dataset": dataset, "noise": noise, "p": 0.97}, "metrics": metrics}


def test_tables_and_figures_from_records_alone():
    params = cc.Params(datasets=("mnist", "fashion_mnist"), ps=(0.9, 0.97, 1.0), k=40)
    records = [_synthetic_record(d, n, seed=i) for i, (d, n) in
               enumerate([("mnist", "additive"), ("mnist", "replacement"), ("fashion_mnist", "additive")])]
    t = cc.tables(params, records)
    fit_rows = t["centroid_fit"][1]
    assert len(fit_rows) == 6 and t["centroid_fit"][0][4:] == ["n_points", "a", "b", "c", "A", "r2"]
    for row in fit_rows:  # K = 40 sets of 3000 logits: a, b, c recovered to a few percent
        assert row[5] == pytest.approx(3.0, rel=0.03) and row[6] == pytest.approx(0.1, abs=0.01)
        assert row[7] == pytest.approx(0.2, rel=0.03) and row[8] == pytest.approx(row[5] / 0.03)
    assert fit_rows[0][5:] == pytest.approx(fit_rows[1][5:])  # refit from the stored sample = stored fit
    acc_rows = t["accuracy"][1]
    assert acc_rows[0] == ["mnist", "additive", 0.97, "network", 0.55, pytest.approx(math.sqrt(0.005)), 2]
    model_rows = t["centroid_model_accuracy"][1]
    assert [r[2] for r in model_rows[:3]] == [0.9, 0.97, 1.0]
    assert model_rows[2][3] == pytest.approx(0.1, abs=0.03)  # p = 1: the model is at chance (3000 draws)

    figs = cc.figures(params, records)
    assert set(figs) == {"accuracy_vs_p", "logit_scatter"}
    axes = figs["accuracy_vs_p"].axes
    assert len(axes) == 4  # 2 data sets × 2 noises
    mc_lines = [ln for ln in axes[0].lines if ln.get_label() == "centroid model (MC)"]
    ma = records[0]["metrics"]["centroid_model"]["model_accuracy"]
    np.testing.assert_allclose(mc_lines[0].get_ydata(), ma["monte_carlo"])
    scatter_axes = [ax for ax in figs["logit_scatter"].axes if ax.get_visible()]
    assert len(scatter_axes) == 3
    r2_text = [tx.get_text() for tx in scatter_axes[0].texts]
    assert r2_text == [f"R² = {cc.refit(records[0])['r2']:.3f}"]
    sd = cc.scatter_data(records[0])
    assert sd["is_true"].sum() == 300
    resid = sd["actual"] - sd["predicted"]
    assert 1 - resid @ resid / np.sum((sd["actual"] - sd["actual"].mean()) ** 2) == pytest.approx(sd["r2"])


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(p_ref=0.95), r"p_ref \(0.95\) must be one of ps"),
        (dict(p_ref=1.0, ps=(0.9, 1.0)), r"p_ref must be in \[0, 1\) \(so that A"),
        (dict(k=1), "k must be >= 2"),
        (dict(datasets=()), "datasets must list"),
        (dict(datasets=("mnist", "mnist")), "datasets must be distinct"),
        (dict(datasets=("cifar",)), "dataset must be one of"),
        (dict(n_fit_points=-1), "n_fit_points must be >= 0"),
        (dict(n_draws=0), "n_draws must be >= 1"),
        (dict(batch_size=500, n_train=100), "batch_size"),
        (dict(ps=(0.97, 1.5)), r"ps must lie in \[0, 1\]"),
    ],
)
def test_bad_params_name_the_key(change, match):
    with pytest.raises(ValueError, match=match):
        cc.Params(**{**TINY, **change})
    doc = {"study": "centroid_comparison", "quick": {**{k: list(v) if isinstance(v, tuple) else v for k, v in {**TINY, **change}.items()}},
           "full": {}}
    with pytest.raises(ConfigError, match=match):
        parse_config(doc, "quick")


def test_missing_kmnist_fails_in_preflight(tmp_path, monkeypatch):
    monkeypatch.delenv("NWCORRUPT_KMNIST_DIR", raising=False)
    data._RAW_CACHE.clear()
    cfg = parse_config({"study": "centroid_comparison", "quick": {"datasets": ["digits", "kmnist"]}, "full": {}}, "quick")
    with pytest.raises(ConfigError, match="NWCORRUPT_KMNIST_DIR"):
        runner.run(cfg, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()


def test_points_and_reference_level():
    params = cc.Params(datasets=("mnist", "digits"), ps=(0.9, 0.97, 1.0))
    pts = cc.points(params)
    assert len(pts) == 2 * 2 * 3
    refs = [p for p in pts if cc.is_ref(params, p)]
    assert sorted((p["dataset"], p["noise"]) for p in refs) == sorted(
        (d, n) for d in ("mnist", "digits") for n in ("replacement", "additive"))
