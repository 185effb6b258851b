"""Per-request bookkeeping of one run, kept in flat lists and turned into a DataFrame once.

The engine writes times and outcomes by request index; nothing here runs per
event beyond list stores, so a 1,000,000-request run builds its table at the end.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import metrics as m
from .workload import Workload

NAN = float("nan")


class RequestLog:
    """Times (seconds, NaN = never), GPU index (-1 = none), outcome code, retries."""

    def __init__(self, n: int) -> None:
        self.admit = [NAN] * n
        self.dispatch = [NAN] * n
        self.start = [NAN] * n
        self.finish = [NAN] * n
        self.gpu = [-1] * n
        self.outcome = [m.OUTCOME_CODE[m.LOST]] * n
        self.retries = [0] * n
        self.attempt = [0] * n
        self.error: list[str | None] = [None] * n
        self.ids = [""] * n  # request ids, written by the engine at arrival

    def frame(self, wl: Workload, gpu_ids: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
        """The requests table (REQUEST_COLUMNS) and the per-request served work."""
        n = len(wl)
        submit = wl.arrival_s
        dispatch = np.array(self.dispatch, dtype=float)
        start = np.array(self.start, dtype=float)
        finish = np.array(self.finish, dtype=float)
        outcome_code = np.array(self.outcome, dtype=np.int8)
        done = outcome_code == m.OUTCOME_CODE[m.COMPLETED]
        gpu = np.array(self.gpu, dtype=np.int64)
        gid_table = np.array([*gpu_ids, None], dtype=object)
        retries = np.array(self.retries, dtype=np.int32)
        width = max(6, len(str(max(n - 1, 0))))
        frame = pd.DataFrame(
            {
                m.REQUEST_ID: self.ids if "" not in self.ids else ids_of(n, width),
                m.USER_ID: pd.Categorical.from_codes(wl.user, categories=list(wl.user_names)),
                m.PRIORITY: wl.priority.astype(np.int8),
                m.TYPE: pd.Categorical.from_codes(wl.type_idx, categories=list(wl.type_names)),
                m.MODEL_ID: pd.Categorical.from_codes(wl.model_idx, categories=list(wl.model_ids)),
                m.SUBMIT_S: submit,
                m.ADMIT_S: np.array(self.admit, dtype=float),
                m.DISPATCH_S: dispatch,
                m.START_S: start,
                m.FINISH_S: finish,
                m.GPU_ID: gid_table[gpu],
                m.OUTCOME: pd.Categorical.from_codes(outcome_code, categories=list(m.OUTCOMES)),
                m.RETRIES: retries,
                m.WAIT_S: np.where(done, dispatch - submit, np.nan),
                m.LATENCY_S: np.where(done, finish - submit, np.nan),
                m.SERVICE_S: np.where(done, finish - start, np.nan),
                m.REROUTED: retries > 0,
                m.ERROR: pd.array(self.error, dtype="string"),
            },
            columns=list(m.REQUEST_COLUMNS),
        )
        served = np.where(done, wl.work, 0.0)
        return frame, served


def request_id(i: int, width: int) -> str:
    return f"r{i:0{width}d}"


def ids_of(n: int, width: int) -> list[str]:
    return [f"r{i:0{width}d}" for i in range(n)]
