"""What single units respond to: channel maps, top-activating examples, feature visualisation."""
