"""The synth engine: 16 MIDI channels, voices, mixer, effects and limiter, shared by live play and file rendering.

``Engine.process(out)`` fills a whole ``(frames, 2)`` float32 block: it applies every queued
event whose time (in engine frames) falls inside the block at its exact sample offset, mixes
the voices, adds the returns of the reverb and chorus buses (``effects``: each channel sends
to them at its CC91 and CC93 levels; off unless ``effects`` turns them on) and runs a soft
limiter. Live play feeds the queue from the MIDI thread and calls
``process`` from the audio callback; offline rendering pushes the file's events and calls it
in a loop. The voices' state lives in a ``VoicePool`` (``voices``), what MIDI events do to them
in the ``Performer`` (``performer``: notes, pedals, controllers, programs, resets), the ``Mixer`` (``mixer``)
renders them, the ``Limiter`` (``limiter``) makes the output block. Real-time contract of ``process``: no torch, no disk, no logging, no blocking lock,
and work bounded by the polyphony limit whatever arrives on MIDI: at most ``max_events`` events
are applied per block (the rest wait for the next one), the voices are rendered in at most
``max_splits + 1`` stretches per block (a flood of events at more distinct samples than that
applies the rest at the last split), and all voices are mixed together by a fixed number of
NumPy calls (see ``mixer``). Every array it works in is made in ``__init__``: what a block
allocates is Python's and NumPy's small change (scalars, a reduction's few hundred bytes).

Channel 10 (index 9) plays the preset's drum kit. ``instrument`` overrides the General MIDI
program of every melodic channel. Pitches outside an instrument's playable range are played
by re-pitching the nearest playable pitch; drum notes outside the kit's range are skipped.
``morph``: its controllers move a channel's position (no sounding voice changes: the block is
not split), which the channel's next note-ons play (:class:`~sing_synth.morph.MorphControl`).
"""

from __future__ import annotations

import numpy as np

from . import events as ev
from .channels import InstrumentMap
from .effects import Effects, EffectSettings
from .limiter import Limiter
from .mixer import Mixer
from .note_source import NoteSource
from .performer import Performer
from .voices import VoicePool

__all__ = ["Engine"]


class Engine:
    """16 channels of MIDI state driving a voice pool; see the module docstring for the contract.

    ``instruments`` is a :class:`~sing_synth.preset.Preset` (with ``instrument``, an optional
    instrument id overriding the program of melodic channels, and ``morph``) or a ready :class:`InstrumentMap`.
    ``effects``: the reverb and chorus buses (:class:`~sing_synth.effects.EffectSettings`; None:
    both off, the dry engine). ``stems``: MIDI channels (0-15) whose share of each block is also
    kept apart, in ``stems`` (channels, 2, frames): the channel's voices and their own reverb and
    chorus (a lane of the effects each, see ``effects``), after the master gain and the limiter's
    gain but before its soft knee, so they add up to the mix wherever the knee leaves it alone.
    Offline only (it allocates). ``offline``: an engine that renders a file, where allocating is
    fine: the reverb bus may then be a convolution (``reverb_ir``, the same samples to float rounding).
    """

    def __init__(
        self,
        instruments,
        source: NoteSource,
        rate: int = 44100,
        instrument: int | None = None,
        polyphony: int = 64,
        gain: float = 0.5,
        max_block: int = 4096,
        queue_size: int = 4096,
        max_events: int = 512,
        max_splits: int = 32,
        release: float = 0.25,
        threshold: float = 0.85,
        limiter_release: float = 0.3,
        chunk: int | None = None,
        effects: EffectSettings | None = None,
        stems=None,
        morph=None,
        limiter_block: int | None = None,
        offline: bool = False,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if getattr(source, "rate", rate) != rate:
            raise ValueError(f"the note source holds {source.rate} Hz notes for a {rate} Hz engine")
        imap = instruments if isinstance(instruments, InstrumentMap) else InstrumentMap(instruments, instrument, morph)
        self.imap = imap
        self.source = source
        if imap.morph is not None:
            source.add_morph(imap.morph.morph)  # its positions stand in for each other
        self.rate = int(rate)
        self.max_block = int(max_block)
        self.queue = ev.EventQueue(queue_size)
        self.max_events = int(max_events)  # per block: later ones wait for the next block
        # per block, the voices are rendered up to at most this many distinct event times; a flood
        # of events at more times than that applies the rest at the last one (bounded work)
        self.max_splits = int(max_splits)
        self.pool = VoicePool(polyphony, self.rate, release=release)
        settings = effects if effects is not None else EffectSettings.dry()
        settings.check()
        self.effects = Effects(settings, self.rate, self.max_block, offline=offline) if settings.enabled else None
        # chunk: frames mixed per pass (offline: longer)
        self.mixer = Mixer(self.pool, self.max_block, chunk, sends=self.effects is not None, lanes=stems)
        self._buses = self.mixer.sends[None], self.mixer.mix[None]  # (lanes, 2, frames) views for the effects
        self.stem_channels = list(stems) if stems is not None else []
        self.stems = self.mixer.stems if stems is not None else None
        self.stem_effects = (
            Effects(settings, self.rate, self.max_block, lanes=len(self.stem_channels), offline=offline)
            if stems is not None and settings.enabled and self.stem_channels
            else None
        )
        # the limiter rides its gain per block of at most this many frames (offline: shorter than the
        # blocks mixed, as the output's blocks would be)
        self.limiter_block = min(self.max_block, int(limiter_block or self.max_block))
        self.limiter = Limiter(self.rate, self.limiter_block, gain, threshold, limiter_release)
        # the channels' MIDI state and what events do to the voices
        self.performer = Performer(imap, source, self.pool, (self.effects, self.stem_effects), self.effects is not None)
        self.channels = self.performer.channels
        self.frame = 0  # engine time: frames processed so far
        self._ev = [0.0, 0, 0, 0, 0]
        self.max_voices = 0  # statistics (read them from another thread without locking: plain ints)

    # Input ------------------------------------------------------------------------------
    def push(self, kind: int, channel: int, a: int = 0, b: int = 0, time: float = -1.0) -> bool:
        """Queue an event (producer side); ``time`` in engine frames, < 0 meaning at the next block."""
        return self.queue.push(kind, channel, a, b, time)

    @property
    def active_voices(self) -> int:
        """Voices counting against the polyphony limit (fading-out stolen voices excluded)."""
        return self.pool.sounding()

    @property
    def sounding(self) -> bool:
        """Whether anything may still sound: a voice, or an effect's tail."""
        return self.pool.n > 0 or any(fx is not None and fx.active for fx in (self.effects, self.stem_effects))

    # statistics of the events played (see ``Performer``)
    notes_played = property(lambda self: self.performer.notes_played)
    notes_missing = property(lambda self: self.performer.notes_missing)  # neither the note nor a stand-in
    notes_skipped = property(lambda self: self.performer.notes_skipped)  # a channel without an instrument
    voices_stolen = property(lambda self: self.performer.voices_stolen)

    # Processing -------------------------------------------------------------------------
    def process(self, out: np.ndarray) -> None:
        """Fill ``out`` (frames, 1 or 2 channels, float32) with the next block of audio."""
        frames = out.shape[0]
        done = 0
        while done < frames:
            n = min(self.max_block, frames - done)
            self._process_chunk(out[done : done + n], n)
            done += n

    def _process_chunk(self, out: np.ndarray, n: int) -> None:
        pool, mixer, fx, perf = self.pool, self.mixer, self.effects, self.performer
        mixer.mix[:, :n] = 0.0
        if fx is not None:
            mixer.sends[:, :n] = 0.0
        if self.stems is not None:
            mixer.stems[:, :, :n] = 0.0
            mixer.stem_sends[:, :, :n] = 0.0
        end = self.frame + n
        q, e = self.queue, self._ev
        budget = self.max_events
        done = 0  # frames rendered so far: the voices are rendered up to each event's sample
        splits = 0
        while budget > 0 and q.peek_time() < end:
            budget -= 1
            q.pop_into(e)
            t = e[0]
            offset = min(max(int(t) - self.frame, 0), n - 1) if t >= self.frame else 0
            if offset > done:
                if perf.inline(e[1], e[2], e[3], e[4], offset - done, self.frame):
                    continue
                if splits < self.max_splits:
                    mixer.render(self.source.bank, done, offset)
                    done = offset
                    splits += 1
            perf.apply(e[1], e[2], e[3], e[4], self.frame)
        mixer.render(self.source.bank, done, n)
        bank = self.source.bank
        if bank is not None:
            bank.epoch += 1
        self.max_voices = max(self.max_voices, pool.sounding())
        if fx is not None:
            sends, mix = self._buses
            fx.process(sends[:, :, :n], mix[:, :, :n])
        stems = None
        if self.stems is not None:
            stems = mixer.stems[:, :, :n]
            if self.stem_effects is not None:
                self.stem_effects.process(mixer.stem_sends[:, :, :n], stems)
        step = self.limiter_block
        for a in range(0, n, step):
            b = min(a + step, n)
            self.limiter.process(mixer.mix[:, a:b], out[a:b], None if stems is None else stems[:, :, a:b])
        self.frame = end
