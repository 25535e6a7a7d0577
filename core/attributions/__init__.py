"""Which pixels and units drive a prediction, and whether to trust it."""
