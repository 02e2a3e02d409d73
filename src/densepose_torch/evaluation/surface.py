"""What the GPS metric needs from a body model: the closest vertex of a chart point, and
geodesic distances between vertices. The official SMPL files and our synthetic body both
provide it."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class BodySurface(Protocol):
    def nearest_vertices(self, parts: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """For each point (part 1..24, U, V in [0, 1]) the index of the surface vertex of that part
        closest in (U, V); -1 where the part has no vertex (e.g. part 0)."""
        ...

    def geodesic_distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Geodesic distance on the rest-pose surface (metres) between vertices a[i] and b[i],
        indices as returned by `nearest_vertices` (>= 0); 0 where they are the same point."""
        ...
