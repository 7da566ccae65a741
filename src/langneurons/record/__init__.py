"""Recording: stream a corpus through a model and count, per language, how each MLP neuron fires."""

from langneurons.record.recorder import RecordSettings, record

__all__ = ["RecordSettings", "record"]

from langneurons._verbs import make_verb  # noqa: E402

make_verb(__name__)  # `ln.record(...)` calls langneurons.api.record
