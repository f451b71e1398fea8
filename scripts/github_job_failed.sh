#!/usr/bin/env bash
# Posts "the job failed before patchswarm ran" on the issue or PR that triggered the workflow.
# Used by action.yml when a step before patchswarm failed (setup-python, pip install, bootstrap): patchswarm
# never started, so it cannot say so itself. Needs only bash, curl and jq (no patchswarm, no Python).
#
# Environment: GITHUB_API_URL, GITHUB_REPOSITORY, PATCHSWARM_GITHUB_TOKEN, NUMBER (issue or PR), RUN_URL.
set -euo pipefail
: "${GITHUB_API_URL:?}" "${GITHUB_REPOSITORY:?}" "${PATCHSWARM_GITHUB_TOKEN:?}" "${NUMBER:?}" "${RUN_URL:?}"
body="❌ **patchswarm** could not start: the workflow job failed before patchswarm ran (installing it or \
preparing Docker). Nothing was attempted and nothing was spent on models. See [the workflow run](${RUN_URL}) \
for the failing step."
jq -n --arg body "$body" '{body: $body}' |
  curl -fsS -X POST -o /dev/null \
    -H "Authorization: Bearer ${PATCHSWARM_GITHUB_TOKEN}" -H "Accept: application/vnd.github+json" \
    --data @- "${GITHUB_API_URL}/repos/${GITHUB_REPOSITORY}/issues/${NUMBER}/comments"
echo "posted the failure comment on #${NUMBER}"
