"""The speech front end: audio in (files, microphones), voice activity, Whisper's transcript and
encoder features."""
