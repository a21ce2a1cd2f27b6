"""The former name of rrn_app/sample_io.py (piano rolls out as MIDI, PNG and WAV), kept for code that imports it."""

from rrn_app.sample_io import (LOWEST_NOTE, SAMPLE_RATE, VELOCITY, frame_seconds, note_name, notes_of,  # noqa: F401
                               to_pretty_midi, unused_stem, write_midi, write_png, write_wav)
