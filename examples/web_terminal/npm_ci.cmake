# Runs `npm ci` in DIR (package.json and package-lock.json already there)
# and writes STAMP whatever happens: a build without npm or network still
# succeeds, and its page says xterm.js is missing. Delete STAMP to retry.
execute_process(
  COMMAND ${NPM} ci --no-audit --no-fund --ignore-scripts --fetch-retries=1 --fetch-timeout=30000
  WORKING_DIRECTORY ${DIR}
  RESULT_VARIABLE rc
  OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(WARNING "npm ci failed in ${DIR} (${rc}); ${WHAT} will be missing. Delete ${STAMP} to retry.")
endif()
file(TOUCH ${STAMP})
