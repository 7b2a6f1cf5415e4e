package encoder

// PrerollFrames exposes the restart pre-roll to the external tests.
const PrerollFrames = prerollFrames
