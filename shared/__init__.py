"""What all three backends share: the spec, params, validation, data, tolerances and the interface."""
