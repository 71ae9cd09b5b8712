"""Symbolic regression of the next spacing on the past ones (gplearn), fitted to the true targets.

A law  s_{t+1} - 1 = f(d_0, ..., d_{P-1}, c)  with d_j = s_{t-j} - 1 (the last P spacings, centred)
and c = sum of the last `count_window` d's (the running count the zeros keep rigid). The law is
fitted to the data's own next spacings on the train spacings nearest val (never to a model's
predictions: a law fitted to a model's means describes the model, not the zeros), and scored on
val positions beside the least-squares linear law on the same features, the model's predicted
mean at the same positions, and the constant 1 (all as mean squared error in spacing units^2).
gplearn is the standard genetic-programming regressor for Python (PySR needs a Julia runtime
downloaded on first use, which a pod or laptop may not have); it is imported only here.
"""
import numpy as np

from seqlab.core.errors import UserError
from seqlab.mdn import evaluate as mdn_eval, mixture

FUNCTIONS = ("add", "sub", "mul", "div", "sin", "cos", "neg")


def features(stream, n_lags, count_window):
    """(X, y) over every t with a full history: X[:, j] = s_{t-j} - 1 (j < n_lags), X[:, n_lags] = the
    count c_t over the last count_window spacings; y = s_{t+1} - 1."""
    d = np.asarray(stream, dtype=np.float64) - 1.0
    first = max(n_lags, count_window) - 1
    t = np.arange(first, len(d) - 1)
    csum = np.concatenate([[0.0], np.cumsum(d)])
    X = np.stack([d[t - j] for j in range(n_lags)] + [csum[t + 1] - csum[t + 1 - count_window]], 1)
    return X, d[t + 1]


def feature_names(n_lags, count_window):
    return [f"d{j}" for j in range(n_lags)] + [f"c{count_window}"]


def model_mean_errors(model, wins, n_lags, count_window, batch_size=64):
    """Squared errors of the model's predicted mean on the val positions `heldout` scores (each window's
    t >= max(n_lags, count_window) - 1), in the same order."""
    first = max(n_lags, count_window) - 1
    T = wins.size(1) - 1
    m, y, _ = mdn_eval.predict(model, wins, batch_size)         # E0: every position t = 0..T-1
    err = (mixture.mean(m)[:, first:T] - y[:, first:T]) ** 2
    return err.reshape(-1).numpy()


def heldout(wins, n_lags, count_window):
    """(X, y) of the val windows, window by window, positions t >= max(n_lags, count_window) - 1."""
    parts = [features(w.numpy(), n_lags, count_window) for w in wins]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def fit(train_stream, wins, n_lags=8, count_window=32, n_fit=10000, population=500, generations=15, seed=0):
    """Fit the law on n_fit rows drawn from train_stream, score it on the val windows. Returns the report
    (program, feature names, train and held-out MSEs of the symbolic and linear laws and of 1)."""
    try:
        from gplearn.genetic import SymbolicRegressor
    except ImportError:
        raise UserError("--symbolic needs gplearn: pip install gplearn") from None
    X, y = features(train_stream, n_lags, count_window)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(X), min(n_fit, len(X)), replace=False)
    X, y = X[rows], y[rows]
    names = feature_names(n_lags, count_window)
    reg = SymbolicRegressor(population_size=population, generations=generations, function_set=FUNCTIONS,
                            parsimony_coefficient=1e-3, max_samples=0.9, random_state=seed, n_jobs=1,
                            feature_names=names)
    reg.fit(X, y)
    A = np.c_[X, np.ones(len(X))]
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    Xv, yv = heldout(wins, n_lags, count_window)
    mse = lambda pred, target: float(np.mean((pred - target) ** 2))
    return {"program": str(reg._program), "features": names, "length": int(reg._program.length_),
            "n_fit": len(X), "n_heldout": len(yv), "population": population, "generations": generations,
            "linear_coef": dict(zip(names + ["const"], coef.tolist())),
            "train_mse": {"symbolic": mse(reg.predict(X), y), "linear": mse(A @ coef, y), "one": mse(0.0, y)},
            "heldout_mse": {"symbolic": mse(reg.predict(Xv), yv), "linear": mse(np.c_[Xv, np.ones(len(Xv))] @ coef, yv),
                            "one": mse(0.0, yv)}}
