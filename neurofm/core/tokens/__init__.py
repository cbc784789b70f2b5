"""Streams to tokens: the helpers encoders cut streams with, the shared convolutional core of the
stimulus path, and tasks (which streams are visible, which are targets) drawn per window."""
