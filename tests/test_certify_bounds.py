"""Coverage of the sound bounds, and certify_mixture against references, attacks and bad input."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from robustmix import Smoothing
from robustmix.certify import (ABSTAIN, Inputs, Sequential, SmoothedClassifier, bernstein_lower, betting_lower,
                               binomial_cs_lower, binomial_cs_upper, certify_mixture, clopper_pearson_lower)
from robustmix.certify.mixture import _looks
from robustmix.certify.smoothing import chunk_rows, noise_chunk
from robustmix.errors import ConfigError, InputError, ModelError

DRAWS = 10_000


pytestmark = pytest.mark.usefixtures("one_thread")


def _max_violations(delta, draws=DRAWS):
    """Violations allowed at level delta: delta * draws plus 3 binomial standard deviations."""
    return delta * draws + 3 * math.sqrt(delta * (1 - delta) * draws)


LAWS = [("bernoulli", 0.5), ("bernoulli", 0.9), ("bernoulli", 0.99), ("beta", (2.0, 5.0)), ("beta", (30.0, 1.0))]


def _draw(law, shape, rng):
    kind, par = law
    if kind == "bernoulli":
        return (rng.random(shape) < par).astype(np.float64), par
    a, b = par
    return rng.beta(a, b, size=shape), a / (a + b)


def test_clopper_pearson_coverage():
    rng = np.random.default_rng(0)
    for p in (0.05, 0.5, 0.9, 0.995):
        for n in (20, 300):
            k = rng.binomial(n, p, size=DRAWS)
            misses = (clopper_pearson_lower(k, n, 0.1) > p).sum()
            assert misses <= _max_violations(0.1), (p, n, misses)


@pytest.mark.parametrize("law", LAWS)
def test_empirical_bernstein_coverage(law):
    rng = np.random.default_rng(1)
    x, mu = _draw(law, (DRAWS, 100), rng)
    lower = bernstein_lower(x.mean(1), x.var(1, ddof=1), 100, 0.1)
    assert (lower > mu).sum() <= _max_violations(0.1)
    assert (lower <= x.mean(1)).all()


@pytest.mark.parametrize("law", LAWS)
def test_betting_coverage_and_tightness(law):
    rng = np.random.default_rng(2)
    x, mu = _draw(law, (DRAWS, 100), rng)
    lower = betting_lower(x, 0.1, tol=1e-6)
    assert (lower > mu).sum() <= _max_violations(0.1)
    eb = bernstein_lower(x.mean(1), x.var(1, ddof=1), 100, 0.1)
    assert lower.mean() > eb.mean()   # the reason to have it: tighter than empirical Bernstein here


def test_betting_confidence_sequence_under_optional_stopping():
    """Peek after every round of 20 samples; a miss is any peek whose bound exceeds the mean."""
    rng = np.random.default_rng(3)
    delta, peeks = 0.1, range(20, 201, 20)
    for law in (("bernoulli", 0.5), ("beta", (8.0, 2.0))):
        x, mu = _draw(law, (DRAWS, 200), rng)
        missed = np.zeros(DRAWS, dtype=bool)
        for t in peeks:
            missed |= betting_lower(x[:, :t], delta, time_uniform=True, tol=1e-4) > mu
        assert missed.sum() <= _max_violations(delta), law


def test_alpha_spending_over_looks_is_valid_and_peeking_without_it_is_not():
    """The sequential rule: Clopper-Pearson at delta / J at each of J fixed looks, stop anywhere."""
    rng = np.random.default_rng(4)
    delta, p = 0.1, 0.5
    looks = _looks(1600, True)
    x = rng.random((DRAWS, looks[-1])) < p
    k = np.cumsum(x, 1)[:, np.array(looks) - 1]
    spent = clopper_pearson_lower(k, np.array(looks), delta / len(looks))
    naive = clopper_pearson_lower(k, np.array(looks), delta)
    assert ((spent > p).any(1)).sum() <= _max_violations(delta)
    assert ((naive > p).any(1)).sum() > _max_violations(delta)   # the simulation can see a broken rule


def test_binomial_confidence_sequence_under_optional_stopping_at_every_sample():
    """The worst stopping rule stops a stream at the first sample whose bound passes p.  By the bound's
    monotonicity that happens iff the mixture martingale at p reaches 1/delta, which is checked at every one of
    1,000 samples for 2,000 streams per p; the bound itself is checked against the martingale on 4,000 (k, t)."""
    from robustmix.certify.stats import _log_mixture
    rng = np.random.default_rng(12)
    delta, streams, horizon = 0.1, 2000, 1000
    t = np.arange(1, horizon + 1, dtype=np.float64)
    for p in (0.3, 0.84, 0.97, 0.999):
        crossed = np.zeros(streams, dtype=bool)
        for part in np.array_split(np.arange(streams), 10):
            k = np.cumsum(rng.random((len(part), horizon)) < p, 1).astype(np.float64)
            crossed[part] = (_log_mixture(k, np.broadcast_to(t, k.shape), np.full(k.shape, p))
                             >= math.log(1 / delta)).any(1)
        assert crossed.sum() <= _max_violations(delta, streams), p
        # the bound passes p exactly where the martingale at p has crossed (up to the bisection's resolution)
        tt = rng.integers(1, 3000, 4000).astype(np.float64)
        kk = rng.binomial(tt.astype(np.int64), min(p + 0.02, 1.0)).astype(np.float64)
        lower = binomial_cs_lower(kk, tt, delta)
        martingale = _log_mixture(kk, tt, np.full(tt.shape, p)) >= math.log(1 / delta)
        assert np.array_equal(lower > p + 1e-9, martingale & (lower > p + 1e-9))
        assert not (martingale & (lower < p - 1e-9)).any()
    # a fixed-n bound recomputed at every sample breaks under the same stopping rule
    k = np.cumsum(rng.random((streams, horizon)) < 0.5, 1)
    looks = np.arange(10, horizon + 1, 10)
    naive = clopper_pearson_lower(k[:, looks - 1], looks, delta)
    assert ((naive > 0.5).any(1)).sum() > _max_violations(delta, streams)


def test_binomial_confidence_sequence_is_nearly_as_tight_as_a_fixed_n_bound():
    assert binomial_cs_lower(9500, 10_000, 0.001) > 0.939                  # Clopper-Pearson: 0.9429
    t = np.arange(1, 200)
    assert t[np.argmax(binomial_cs_lower(t, t, 0.001) >= 0.841)] <= 50     # Clopper-Pearson: 40
    assert binomial_cs_lower(0, 100, 0.001) == 0.0
    assert np.all(binomial_cs_upper(np.array([0, 50, 100]), 100, 0.01) >= np.array([0.0, 0.5, 1.0 - 1e-12]))
    with pytest.raises(ConfigError, match="0 <= k <= t"):
        binomial_cs_lower(5, 3, 0.1)


def test_bounds_reject_bad_arguments():
    with pytest.raises(ConfigError, match="delta"):
        betting_lower(np.ones(5), 1.5)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        betting_lower(np.array([0.5, 2.0]), 0.1)
    with pytest.raises(ConfigError, match="n >= 2"):
        bernstein_lower(0.5, 0.1, 1, 0.1)


# --- certify_mixture ------------------------------------------------------------------------------------------


class Linear(torch.nn.Module):
    """Two-class linear model: logits (0, scale * (w.x + b)); its smoothed scores have closed forms."""

    def __init__(self, w, b=0.0, scale=3.0):
        super().__init__()
        self.w, self.b, self.scale = torch.as_tensor(w, dtype=torch.float32), b, scale

    def forward(self, x):
        s = (x.flatten(1) @ self.w + self.b) * self.scale
        return torch.stack([torch.zeros_like(s), s], 1)

    def margin(self, x):
        return x.flatten(1).double() @ self.w.double() + self.b

    def smoothed(self, margin, sigma, smoothing):
        """Exact h_1 at a given margin: Phi for votes, Gauss-Hermite quadrature of the sigmoid for scores."""
        s = sigma * float(self.w.norm())
        if smoothing == "hard":
            return torch.special.ndtr(margin / s)
        nodes, weights = np.polynomial.hermite_e.hermegauss(120)
        z = margin[..., None] + s * torch.from_numpy(nodes)
        return (torch.sigmoid(self.scale * z) * torch.from_numpy(weights)).sum(-1) / math.sqrt(2 * math.pi)


TOY = Inputs(input_range=None)     # the toys' inputs lie on all of R^d (not images in [0, 1])


def _tiny():
    torch.manual_seed(0)
    h = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    g = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.rand(5, 1, 2, 2) * 2
    return g, h, x


def _reference(h, x, sigma, estimator, n0, n, delta, alphas, seed=0):
    """Per image, per sample chunk, in float64 scalars: the documented algorithm written out plainly."""
    torch.set_grad_enabled(False)
    preds, radii = [], []
    m = chunk_rows(x.shape[1:])
    for i, xi in enumerate(x):
        def scores(stream, count):
            out = []
            for chunk in range(-(-count // m)):
                noise = noise_chunk(xi.shape, seed=seed, index=i, stream=stream, chunk=chunk)
                out.append(h(xi[None] + sigma * noise[:min(m, count - chunk * m)]).double().softmax(-1))
            return torch.cat(out)
        sel, est = scores(1, n0), scores(2, n)
        if estimator == "clopper-pearson":
            top = int(torch.bincount(sel.argmax(1), minlength=sel.shape[1]).argmax())
            p = float(clopper_pearson_lower(int((est.argmax(1) == top).sum()), n, delta))
        else:
            top = int(sel.mean(0).argmax())
            s = est[:, top].numpy()
            p = float(bernstein_lower(s.mean(), s.var(ddof=1), n, delta) if estimator == "bernstein"
                      else betting_lower(s, delta))
        row_p, row_r = [], []
        for a in alphas:
            r = sigma / 2 * (norm.ppf(a * p) - norm.ppf(a * (1 - p) + 1 - a)) if a >= 0.5 else 0.0
            r = max(float(np.nan_to_num(r, nan=0.0)), 0.0)
            row_r.append(r)
            row_p.append(top if r > 0 else ABSTAIN)
        preds.append(row_p)
        radii.append(row_r)
    torch.set_grad_enabled(True)
    return torch.tensor(preds).T, torch.tensor(radii, dtype=torch.float64).T


@pytest.mark.parametrize("estimator", ["clopper-pearson", "bernstein", "betting"])
def test_certify_mixture_matches_per_image_reference(estimator):
    g, h, x = _tiny()
    alphas = [0.4, 0.6, 0.8, 1.0]
    cert = certify_mixture(g, h, x, alphas=alphas, smoothing=Smoothing(0.3, 1500, 50, 0.01, batch_size=333),
                           estimator=estimator, inputs=TOY)
    pred, radius = _reference(h, x, 0.3, estimator, 50, 1500, 0.01, alphas)
    assert torch.equal(cert.prediction, pred)
    torch.testing.assert_close(cert.radius, radius, rtol=1e-6, atol=1e-9)
    assert (cert.radius[1:] > 0).any() and (cert.radius[0] == 0).all() and (cert.prediction[0] == ABSTAIN).all()
    assert cert.smoothing == ("hard" if estimator == "clopper-pearson" else "soft")
    assert cert.samples_used.tolist() == [1500] * 5
    assert cert.to_dict()["radius"] == cert.radius.tolist() and cert.to_dict()["estimator"] == estimator


def test_alpha_one_is_cohen_certify():
    g, h, x = _tiny()
    smoothed = SmoothedClassifier(h, 0.3, batch_size=400, input_range=None)   # toy inputs on all of R^d
    pred, radius = smoothed.cohen_certify(x, n0=100, n=2000, delta=0.001)
    cert = certify_mixture(g, h, x, alphas=1.0, smoothing=Smoothing(0.3, 2000, delta=0.001), inputs=TOY)
    assert torch.equal(cert.prediction[0], pred)
    torch.testing.assert_close(cert.radius[0], radius, rtol=1e-12, atol=1e-12)


def test_abstains_with_prediction_minus_one_and_radius_zero():
    h = Linear([1.0, 0.0])
    x = torch.tensor([[0.0, 0.3], [0.001, -1.0], [2.0, 0.0]])   # at the boundary twice, then far from it
    for est in ("clopper-pearson", "betting"):
        cert = certify_mixture(None, h, x, alphas=[0.3, 0.9, 1.0], smoothing=Smoothing(0.5, 1000), estimator=est,
                               inputs=TOY)
        assert (cert.prediction[:, :2] == ABSTAIN).all() and (cert.radius[:, :2] == 0).all()
        assert (cert.prediction[0] == ABSTAIN).all() and (cert.radius[0] == 0).all()   # alpha < 1/2
        assert cert.prediction[1:, 2].tolist() == [1, 1] and (cert.radius[1:, 2] > 0).all()


@pytest.mark.parametrize("sequential", [False, True])
def test_results_do_not_depend_on_batch_size_or_sharding(sequential):
    g, h, x = _tiny()
    opts = dict(alphas=[0.7, 1.0], estimator="betting", sequential=Sequential(tolerance=0.2) if sequential else None)

    def run(x, batch_size, inputs=TOY):
        return certify_mixture(g, h, x, smoothing=Smoothing(0.3, 900, 30, batch_size=batch_size), inputs=inputs,
                               **opts)

    a, b = run(x, 7), run(x, 5000)
    c = run(x[2:], 64, Inputs(indices=[2, 3, 4], input_range=None))
    # the same noise; float32 forward passes of other batch sizes may differ in the last bit, which the soft
    # scores carry into the bound (about 1e-9 here)
    assert torch.equal(a.prediction, b.prediction) and torch.equal(a.prediction[:, 2:], c.prediction)
    torch.testing.assert_close(a.radius, b.radius, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.radius[:, 2:], c.radius, rtol=0, atol=1e-6)
    assert torch.equal(a.samples_used[2:], c.samples_used)


@pytest.mark.parametrize("rule, first", [("confidence-sequence", 16), ("doubling-looks", 200)])
def test_sequential_stops_early_and_stays_valid(rule, first):
    """Known p for every input (linear model, votes): the reported bound may miss p in at most delta of them."""
    h = Linear([1.0, 1.0])
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1500, 2, generator=gen) * 0.4
    delta = 0.2
    cert = certify_mixture(None, h, x, alphas=[0.8, 1.0], smoothing=Smoothing(0.5, 1600, delta=delta), inputs=TOY,
                           sequential=Sequential(rule, tolerance=0.1))
    p_true = h.smoothed(h.margin(x), 0.5, "hard")
    p_top = torch.where(cert.top_class == 1, p_true, 1 - p_true)
    assert (cert.p_lower > p_top).sum() <= _max_violations(delta, len(x))
    assert cert.samples_used.float().mean() < 1600 and cert.samples_used.min() == first
    assert cert.sequential_rule == rule
    fixed = certify_mixture(None, h, x, alphas=[0.8, 1.0], smoothing=Smoothing(0.5, 1600, delta=delta), inputs=TOY)
    assert ((fixed.radius - cert.radius).amax(0) <= 0.1 + 0.2).float().mean() > 0.95


@pytest.mark.parametrize("rule", ["confidence-sequence", "doubling-looks"])
@pytest.mark.parametrize("radii", [None, [0.25, 0.5, 1.0]])
def test_sequential_with_reported_radii_stays_valid(radii, rule):
    """Optional stopping steered by the reported radii: still at most delta of the reported bounds miss p."""
    h = Linear([1.0, 1.0])
    x = torch.randn(1500, 2, generator=torch.Generator().manual_seed(8)) * 0.6
    delta = 0.2
    tolerance = math.inf if radii else 0.1
    cert = certify_mixture(None, h, x, alphas=[1.0], smoothing=Smoothing(0.5, 3200, delta=delta), inputs=TOY,
                           sequential=Sequential(rule, tolerance, radii))
    p_true = h.smoothed(h.margin(x), 0.5, "hard")
    p_top = torch.where(cert.top_class == 1, p_true, 1 - p_true)
    assert (cert.p_lower > p_top).sum() <= _max_violations(delta, len(x))
    assert cert.radii == radii and cert.tolerance == tolerance


def test_h_mean_estimates_the_soft_smoothed_classifier():
    """The point estimate over every drawn sample, against the closed form (Gauss-Hermite) within 5 MC std."""
    h = Linear([0.7, -0.4], b=0.2)
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(9)) * 0.5
    cert = certify_mixture(None, h, x, alphas=[1.0], smoothing=Smoothing(0.5, 2000, 50), inputs=TOY,
                           sequential=Sequential(radii=[0.25, 0.5]))
    exact = h.smoothed(h.margin(x), 0.5, "soft")
    std = 0.5 / torch.sqrt((50 + cert.samples_used).double())
    assert ((cert.h_mean[:, 1] - exact).abs() <= 5 * std).all()
    assert torch.allclose(cert.h_mean.sum(1), torch.ones(len(x), dtype=torch.float64))


def _replay(hits, *, radii, tolerance=0.1, num_samples=6400, sigma=0.5, delta=0.001, sequential=True,
            rule="doubling-looks"):
    """estimate_top_bound on given votes for the top class: hits (n, num_samples) booleans."""
    from robustmix.certify.mixture import Estimator, estimate_top_bound
    cum = np.cumsum(hits, 1)

    def draw(active, start, stop):
        return cum[active, stop - 1] - (cum[active, start - 1] if start else 0), None

    top = torch.zeros(len(hits), dtype=torch.long)
    return estimate_top_bound(draw, top, Estimator.CLOPPER_PEARSON, smoothing=Smoothing(sigma, num_samples, delta=delta),
                              alphas=torch.tensor([0.8, 1.0], dtype=torch.float64), c=3,
                              sequential=Sequential(rule, tolerance, radii) if sequential else None)


def test_reported_radii_steer_the_stopping_rule():
    """Brute force over votes with known frequencies: an input stops early only when its reported bin is settled."""
    from robustmix.certify.mixture import _looks, top_bound_radius
    rng = np.random.default_rng(3)
    p = np.repeat([1.0, 0.999, 0.98, 0.9, 0.84, 0.75, 0.6, 0.4], 40)
    hits = rng.random((len(p), 6400)) < p[:, None]
    grid = [0.25, 0.5, 0.75, 1.0]
    fixed, _ = _replay(hits, radii=None, sequential=False)           # the whole budget, all of delta
    steered, used = _replay(hits, radii=grid, tolerance=math.inf)
    plain, used_plain = _replay(hits, radii=None, tolerance=0.1)
    looks = _looks(6400, True)
    assert (fixed > 0).any() and set(used.tolist()) <= set(looks)
    top, a = torch.zeros(len(p), dtype=torch.long), torch.tensor([0.8, 1.0], dtype=torch.float64)
    r_fixed, r_steered = top_bound_radius(fixed, top, 3, 0.5, a), top_bound_radius(steered, top, 3, 0.5, a)
    # every vote for the top class: stops at the first look certified past the largest reported radius
    assert (used[:40] < 6400).all() and (r_steered[1, :40] >= 1.0).all()   # alpha 0.8 caps radii at 0.42
    # the certified fraction at each reported radius equals the full-budget run's for nearly every input
    for r in grid:
        assert abs(int((r_steered >= r).sum()) - int((r_fixed >= r).sum())) <= 4, r
    assert used.mean() < used_plain.mean() < 6400
    # abstentions (p = 0.4 < 1/2) stop within a few looks, once a certificate is out of reach
    assert (used[-40:] <= 4 * looks[0]).all() and (r_steered[:, -40:] == 0).all()
    # the reported bound is Clopper-Pearson on exactly the samples used, at delta / J (alpha spending)
    k = np.array([hits[i, :u].sum() for i, u in enumerate(used)])
    assert np.allclose(steered, clopper_pearson_lower(k, used, 0.001 / len(looks)), rtol=0, atol=1e-12)
    # tolerance 0 and no radii: inputs that are certified somewhere run the whole budget
    assert (_replay(hits[:10], radii=None, tolerance=0.0)[1] == 6400).all()


def test_confidence_sequence_rule_stops_after_any_sample_and_reports_its_own_bound():
    """The default rule on votes with known frequencies: far fewer samples than the looks rule for the same
    certified counts, confident inputs stop once past the largest radius, and the bound is the sequence's running maximum."""
    from robustmix.certify.mixture import CS_CAP_SHARE, CS_FIRST_LOOK, CS_GROWTH, _looks, top_bound_radius
    rng = np.random.default_rng(3)
    p = np.repeat([1.0, 0.999, 0.98, 0.9, 0.84, 0.75, 0.6, 0.4], 40)
    hits = rng.random((len(p), 6400)) < p[:, None]
    grid = [0.25, 0.5, 0.75, 1.0]
    fixed, _ = _replay(hits, radii=None, sequential=False)
    cs, used = _replay(hits, radii=grid, tolerance=math.inf, rule="confidence-sequence")
    _, used_looks = _replay(hits, radii=grid, tolerance=math.inf)
    top, a = torch.zeros(len(p), dtype=torch.long), torch.tensor([0.8, 1.0], dtype=torch.float64)
    r_fixed, r_cs = top_bound_radius(fixed, top, 3, 0.5, a), top_bound_radius(cs, top, 3, 0.5, a)
    for r in grid:
        assert abs(int((r_cs >= r).sum()) - int((r_fixed >= r).sum())) <= 4, r
    assert used.mean() < 0.7 * used_looks.mean()
    assert (used[:40] <= 450).all() and (r_cs[1, :40] >= 1.0).all()    # 0.977 (r = 1) at delta / 2: ~395 votes
    assert used[-40:].mean() <= 300 and (r_cs[:, -40:] == 0).all()        # abstentions stop early too
    looks = np.array(_looks(6400, True, CS_FIRST_LOOK, CS_GROWTH))
    assert set(used.tolist()) <= set(looks.tolist())
    cum = np.cumsum(hits, 1)
    assert (used == 6400).any() and (used < 6400).any()
    for i in range(len(p)):   # the sequence's running maximum at delta / 2, and at the end the fixed-n bound too
        seen = looks[looks <= used[i]]
        want = binomial_cs_lower(cum[i, seen - 1], seen, 0.001 * (1 - CS_CAP_SHARE)).max()
        if used[i] == 6400:
            want = max(want, float(clopper_pearson_lower(cum[i, -1], 6400, 0.001 * CS_CAP_SHARE)))
        assert cs[i] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("estimator", ["clopper-pearson", "betting"])
def test_no_flips_inside_certified_radii(estimator):
    """Attack every certified point inside its radius: the exact worst case of h (shift against w) with the
    worst g, and PGD against the exact mixture with a real g.  Neither may change the prediction."""
    h = Linear([0.8, -0.6], b=0.1)
    torch.manual_seed(6)
    g = torch.nn.Linear(2, 2)
    x = torch.randn(300, 2) * 0.5
    sigma, alphas = 0.5, [0.6, 0.8, 1.0]
    cert = certify_mixture(g, h, x, alphas=alphas, smoothing=Smoothing(sigma, 2000, delta=1e-4), inputs=TOY,
                           estimator=estimator)
    assert (cert.radius > 0).sum() > 300
    for k, a in enumerate(alphas):
        r, ok = cert.radius[k], cert.radius[k] > 0
        sign = torch.where(cert.top_class == 1, 1.0, -1.0).double()
        worst = h.margin(x) - sign * r * float(h.w.norm())                 # the margin after the worst shift
        h1 = h.smoothed(worst, sigma, cert.smoothing)
        h_top = torch.where(cert.top_class == 1, h1, 1 - h1)
        assert (a * (2 * h_top - 1) >= (1 - a) - 1e-9)[ok].all()           # Lemma 1 with g all on the other class
        delta = torch.zeros(len(x), 2, dtype=torch.float64, requires_grad=True)
        for _ in range(30):
            xa = x.double() + delta
            h1 = h.smoothed(xa @ h.w.double() + h.b, sigma, cert.smoothing)
            mix = (1 - a) * torch.softmax(g(xa.float()).double(), -1) + a * torch.stack([1 - h1, h1], 1)
            top = mix.gather(1, cert.top_class[:, None])[:, 0]
            loss = (top - mix.gather(1, 1 - cert.top_class[:, None])[:, 0]).sum()
            grad, = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta -= 0.2 * r[:, None] * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
                delta *= (r / delta.norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)[:, None]
        with torch.no_grad():
            xa = x.double() + delta
            h1 = h.smoothed(xa @ h.w.double() + h.b, sigma, cert.smoothing)
            mix = (1 - a) * torch.softmax(g(xa.float()).double(), -1) + a * torch.stack([1 - h1, h1], 1)
        assert (mix.argmax(1) == cert.top_class)[ok].all()


@pytest.mark.parametrize("case, error, words", [
    (dict(smoothing=dict(sigma=0.0)), ConfigError, "sigma"),
    (dict(smoothing=dict(sigma=-1.0)), ConfigError, "sigma"),
    (dict(smoothing=dict(sigma=None)), ConfigError, "needs a noise level"),
    (dict(smoothing=dict(delta=0.0)), ConfigError, "delta"),
    (dict(smoothing=dict(delta=1.0)), ConfigError, "delta"),
    (dict(smoothing=dict(n0=0)), ConfigError, "n0"),
    (dict(smoothing=dict(num_samples=50, n0=100)), ConfigError, "num_samples"),
    (dict(alphas=[0.5, 1.2]), ConfigError, "alpha"),
    (dict(alphas=-0.1), ConfigError, "alpha"),
    (dict(estimator="wilson"), ConfigError, "estimator"),
    (dict(sequential=dict(tolerance=-1.0)), ConfigError, "tolerance"),
    (dict(sequential=dict(radii=[0.5, -1.0])), ConfigError, "radii"),
    (dict(sequential=dict(radii=[])), ConfigError, "radii"),
    (dict(sequential=dict(radii="0.5")), ConfigError, "radii"),
    (dict(sequential=dict(radii=[math.nan])), ConfigError, "radii"),
    (dict(sequential=dict(tolerance=math.inf)), ConfigError, "give radii"),
    (dict(sequential=dict(tolerance=math.nan)), ConfigError, "tolerance"),
    (dict(sequential=dict(rule="wilson")), ConfigError, "unknown sequential rule"),
    (dict(sequential=dict(first_look=0)), ConfigError, "first_look"),
    (dict(sequential=dict(growth=1.0)), ConfigError, "growth"),
    (dict(sequential=dict(futility=1.5)), ConfigError, "futility"),
    (dict(sequential=dict(optimism=-1.0)), ConfigError, "optimism"),
    (dict(sequential=dict(), estimator="bernstein"), ConfigError, "fixed sample size"),
    (dict(inputs=dict(indices=[1, 2])), InputError, "indices"),
    (dict(inputs=dict(indices=["a"] * 5)), ConfigError, "indices"),
    (dict(inputs=dict(seed=1.5)), ConfigError, "seed"),
])
def test_bad_arguments_name_the_argument_and_the_fix(case, error, words):
    g, h, x = _tiny()
    with pytest.raises(error, match=words):
        smoothing = Smoothing(**{**dict(sigma=0.3, num_samples=200, n0=10), **case.get("smoothing", {})})
        sequential = Sequential(**case["sequential"]) if "sequential" in case else None
        inputs = Inputs(**{"input_range": None, **case.get("inputs", {})})
        certify_mixture(g, h, x, alphas=case.get("alphas", [0.8]), smoothing=smoothing, estimator=case.get("estimator"),
                        sequential=sequential, inputs=inputs)


def test_models_with_the_wrong_output_are_refused():
    g, h, x = _tiny()
    opts = dict(alphas=[0.8], smoothing=Smoothing(0.3, 200, 10), inputs=TOY)
    with pytest.raises(ModelError, match=r"model h returns .*\(n, classes\) logits"):   # the probe, before any noise
        certify_mixture(g, torch.nn.Flatten(0), x, **opts)
    with pytest.raises(ModelError, match=r"model h returns tuple.*\(n, classes\) logits"):
        certify_mixture(g, lambda z: (h(z), h(z)), x, **opts)
    with pytest.raises(ModelError, match="classes"):
        certify_mixture(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 5)), h, x, **opts)
