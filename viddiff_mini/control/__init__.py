"""Section 11.3, control: one module per kind of control signal.

text (11.3.1) - animate (11.3.2) - trajectory, drag (11.3.3) - style (11.3.4) -
attributes (11.3.5) - physics (11.3.6) - compose (any combination in one model) -
toy (a closed-form denoiser for fast demos and tests). Metrics: ``viddiff_mini.metrics.control``.
"""
