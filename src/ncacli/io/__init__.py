"""Files a user keeps: images, emoji, models, states, videos."""
