"""The machine-learning core of tinyalign_ros, importable without ROS, grouped by flow.

speech/      the front end: audio in, what the recogniser makes of it
  audio        loading, resampling, checks         sources     file and microphone streams
  vad          streaming Silero segmentation       asr         faster-whisper transcript + features
  whisper_encoder  Whisper's encoder in torch, on speech frames only
assistant/   features -> answer
  projector    BridgeFormer                        prompt      instruction injection
  llm          frozen LLM, embedding table         lora        optional per-user LLM adapter
  checkpoint   Projector (model + metadata + adapter) as one file
  projectors   per-user table of served projectors pipeline    audio/text -> response
learning/    the robot learning its users
  store        per-user utterance/projector log    data        training data + feature cache
  train        EmbedLink, cross-entropy, chained   adapt       one user's adaptation job
  export       a user's log as MCAP
settings     one source of truth for every setting (node parameters, YAML, CLI derive from it)
models       default model folders (offline)      users       safe user ids
metrics      normalised WER
"""
