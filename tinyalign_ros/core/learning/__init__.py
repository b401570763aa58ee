"""Learning on the robot: the utterance log, training data, projector training and per-user
adaptation, and export of a user's log."""
