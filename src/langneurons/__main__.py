"""`python -m langneurons` (also what `torchrun -m langneurons` runs)."""

from langneurons.cli import main

main()
