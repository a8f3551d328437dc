"""The delivery worker: retry maths (pure), the SSRF guard, the sender and the loop."""
