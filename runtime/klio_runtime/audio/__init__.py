"""Audio for Klio jobs: decode, features, plots (pure functions) and the Beam transforms over them."""
