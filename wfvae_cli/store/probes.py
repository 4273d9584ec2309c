"""The probe cache: every distinct input a store's planning probed, its identity and what the probe found.

Probing is the slow part of planning (a subprocess round trip and one decoded frame per input: ~10-50 ms each,
hours at 10^6 inputs), so a store keeps the results: a resume, a ``--dry-run`` or an ``--overwrite`` re-plan of
the same inputs reuses every row whose input is unchanged (same source string and same identity: size + mtime,
or ETag, see :func:`wfvae_cli.io.remote.input_identity`) and probes only the rest. The table is also where the
store remembers inputs whose probe failed *transiently* (timeout, I/O error): those have no row in any bucket
yet; every rerun probes them again and adds their clips (:meth:`LatentStore.extend`).

Held as numpy columns (one row per input, ~100 bytes), never as one Python object per input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from wfvae_cli.store.layout import PROBE_COLUMNS, ProbeState

_STR = np.dtypes.StringDType()


@dataclass(frozen=True, eq=False)
class ProbeTable:
    """Probe results as columns (see :data:`~wfvae_cli.store.layout.PROBE_COLUMNS`), row ``i`` = input ``i``."""

    source: np.ndarray
    identity: np.ndarray
    state: np.ndarray
    error: np.ndarray
    num_frames: np.ndarray
    fps: np.ndarray
    width: np.ndarray
    height: np.ndarray
    rotation: np.ndarray
    codec: np.ndarray
    pix_fmt: np.ndarray

    def __len__(self) -> int:
        return int(self.source.shape[0])

    def columns(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_columns(cls, columns: dict[str, np.ndarray]) -> ProbeTable:
        out = {}
        for name, (dtype, _) in PROBE_COLUMNS.items():
            col = np.asarray(columns[name])
            out[name] = col.astype(_STR if dtype is str else dtype, copy=False)
        return cls(**out)

    @classmethod
    def empty(cls) -> ProbeTable:
        return cls.from_columns({name: np.zeros(0, dtype=_STR if d is str else d)
                                 for name, (d, _) in PROBE_COLUMNS.items()})

    @classmethod
    def build(cls, sources: Sequence[str], identities: Sequence[str], states: np.ndarray, errors: Sequence[str],
              numeric: np.ndarray, codecs: Sequence[str], pix_fmts: Sequence[str]) -> ProbeTable:
        """From per-input results: ``numeric`` is ``(N, 5)`` float64 of num_frames, fps, width, height, rotation."""
        numeric = np.asarray(numeric, dtype=np.float64).reshape(len(sources), 5)
        return cls.from_columns({
            "source": np.array(sources, dtype=_STR), "identity": np.array(identities, dtype=_STR),
            "state": np.asarray(states, dtype=np.uint8), "error": np.array(errors, dtype=_STR),
            "num_frames": numeric[:, 0].astype(np.int64), "fps": numeric[:, 1],
            "width": numeric[:, 2].astype(np.int32), "height": numeric[:, 3].astype(np.int32),
            "rotation": numeric[:, 4].astype(np.int16), "codec": np.array(codecs, dtype=_STR),
            "pix_fmt": np.array(pix_fmts, dtype=_STR),
        })

    def lookup(self) -> dict[str, int]:
        """``source -> row`` (built once per planning; the last row of a repeated source wins)."""
        return {s: i for i, s in enumerate(self.source.tolist())}

    def sources_in(self, state: ProbeState) -> list[str]:
        return self.source[self.state == state].tolist()

    def take(self, rows: np.ndarray) -> ProbeTable:
        return ProbeTable(**{name: col[rows] for name, col in self.columns().items()})

    def merged(self, newer: ProbeTable) -> ProbeTable:
        """This table with ``newer``'s rows replacing the rows of the same source (new sources appended)."""
        if not len(newer):
            return self
        replaced = np.isin(self.source, newer.source) if len(self) else np.zeros(0, dtype=bool)
        keep = self.take(np.flatnonzero(~replaced))
        return ProbeTable(**{name: np.concatenate([col, getattr(newer, name)])
                             for name, col in keep.columns().items()})
