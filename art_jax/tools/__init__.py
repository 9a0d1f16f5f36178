"""Command-line tools: weight conversion, model statistics, benchmarks."""
