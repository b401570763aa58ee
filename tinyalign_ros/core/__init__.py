"""The machine-learning core of tinyalign_ros, importable without ROS.

audio        loading, resampling, checks          vad          streaming Silero segmentation
asr          faster-whisper transcript + features  whisper_encoder  variable-length encoder
projector    BridgeFormer                           prompt       instruction injection
llm          frozen LLM, embedding table            pipeline     audio/text -> response
train        EmbedLink, cross-entropy, chained      checkpoint   safetensors + metadata
data         training data + feature cache          metrics      normalised WER
store        per-user utterance/projector log       adapt        one user's adaptation job
export       a user's log as MCAP                   synth, corpora   speech corpora
models       default model folders (offline)        users        safe user ids
"""
