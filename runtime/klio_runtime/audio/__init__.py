"""Audio for Klio jobs: decode, features and plots (pure functions), and Beam transforms."""
