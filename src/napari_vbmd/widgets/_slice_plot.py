"""Per-slice area and density plot (matplotlib in Qt); a click on it asks to go to that slice."""
from __future__ import annotations

from typing import Callable

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure


class SlicePlot(FigureCanvasQTAgg):
    def __init__(self, on_click: Callable[[int], None] | None = None):
        self.figure = Figure(figsize=(4.0, 3.0), dpi=80, layout="constrained")
        super().__init__(self.figure)
        self.area_axes = self.figure.add_subplot(2, 1, 1)
        self.density_axes = self.figure.add_subplot(2, 1, 2, sharex=self.area_axes)
        self.area_axes.set_ylabel("area (mm²)")
        self.density_axes.set_ylabel("mg HA/cm³")
        self.density_axes.set_xlabel("slice")
        self._markers = []
        self._on_click = on_click
        self.slices: list[int] = []
        self.areas: list[float] = []
        self.densities: list[float] = []
        self._backgrounds = None
        self.setMinimumHeight(165)
        self.mpl_connect("button_press_event", self._clicked)
        self.mpl_connect("draw_event", self._capture_background)

    def show_profile(self, slices, areas, densities, flagged=(), current: int | None = None) -> None:
        self.slices, self.areas, self.densities = list(slices), list(areas), list(densities)
        for axes in (self.area_axes, self.density_axes):
            for line in list(axes.lines) + list(axes.collections):
                line.remove()
        self.area_axes.plot(self.slices, self.areas, color="tab:blue", lw=1.2)
        self.density_axes.plot(self.slices, self.densities, color="tab:orange", lw=1.2)
        flagged = [z for z in flagged if z in set(self.slices)]
        if flagged:
            lookup = dict(zip(self.slices, self.areas))
            self.area_axes.scatter(flagged, [lookup[z] for z in flagged], s=14, color="tab:red", zorder=3,
                                   label="flagged")
        self._markers = [axes.axvline(current if current is not None else 0, color="0.4", lw=0.8, ls="--",
                                      animated=True)  # drawn by blitting: moving it redraws nothing else
                         for axes in (self.area_axes, self.density_axes)]
        for axes in (self.area_axes, self.density_axes):
            axes.relim()
            axes.autoscale_view()
        self.draw_idle()

    def clear(self) -> None:
        """No case: empty axes."""
        self.slices, self.areas, self.densities = [], [], []
        for axes in (self.area_axes, self.density_axes):
            for artist in list(axes.lines) + list(axes.collections):
                artist.remove()
        self._markers = []
        self.draw_idle()

    def _capture_background(self, event=None) -> None:
        self._backgrounds = [self.copy_from_bbox(axes.bbox) for axes in (self.area_axes, self.density_axes)]
        self._blit_markers()

    def _blit_markers(self) -> None:
        if not self._backgrounds or not self._markers:
            return
        for axes, background, marker in zip((self.area_axes, self.density_axes), self._backgrounds, self._markers):
            self.restore_region(background)
            axes.draw_artist(marker)
        # one repaint from the updated buffer, when Qt next paints (a synchronous repaint per axes,
        # as FigureCanvas.blit does, cost the slider a repaint of the dock on every slice)
        self.update()

    def set_current(self, z: int) -> None:
        """Move the current-slice line (cheap: only the line is redrawn)."""
        for marker in self._markers:
            marker.set_xdata([z, z])
        self._blit_markers()

    def _clicked(self, event) -> None:
        if event.inaxes is None or event.xdata is None or self._on_click is None:
            return
        self._on_click(int(round(event.xdata)))
