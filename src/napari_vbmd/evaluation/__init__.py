"""Validation statistics: segmentation metrics, agreement of measurements, study reports.

Engine code: no napari, no Qt.
"""
