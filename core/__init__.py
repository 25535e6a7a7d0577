"""layerscope core library."""
