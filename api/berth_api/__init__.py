"""berth.dev API types (pydantic), versioned."""
