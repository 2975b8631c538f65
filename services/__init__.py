"""The four services. Each is a thin shell of wiring around a pure domain core; none imports another."""
