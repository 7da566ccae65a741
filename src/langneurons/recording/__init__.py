"""Recording: stream a corpus through a model and count, per language, how each MLP neuron fires."""

from langneurons.recording.recorder import RecordSettings, record

__all__ = ["RecordSettings", "record"]
