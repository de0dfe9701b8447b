"""The competition domain, one module per noun (docs/architecture.md, "Competitions"):

- `core`: lookup, visibility, organisers, round states, the rules of entry;
- `specs`: a competition from its spec; `spec_schema`: the spec's format;
- `rounds`: a round's files and fields; `entrants`: teams;
- `submissions`: submitting, quotas, final selections; `grading`: predictions checked
  and scored, grading sessions; `moderation`: what organisers change while it runs;
- `boards`: leaderboards; `exports`: the final ranking.

Pages and API call the same function for each use case; handlers parse and present.
"""
