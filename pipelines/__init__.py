"""The dataset build: sources → plan → Ray Data stages → shard writer → index and dataset card."""
