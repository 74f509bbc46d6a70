# Builds and runs the consumer project against etcdlock, as a test.
#   cmake -DMODE=installed|pkg-config|subdirectory -DSOURCE_DIR=... -DBUILD_DIR=... -DWORK_DIR=... -P run_consumer.cmake
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "failed (${status}): ${ARGN}\n${output}")
  endif()
  message(STATUS "${output}")
endfunction()

# The Prometheus component's consumer, built where etcdlock has the component.
function(run_prometheus_consumer)
  if(EXISTS ${WORK_DIR}/build/prometheus_consumer)
    run(${WORK_DIR}/build/prometheus_consumer)
  elseif(WITH_PROMETHEUS)
    message(FATAL_ERROR "etcdlock was built with the Prometheus exporter, but the consumer did not find it")
  endif()
endfunction()

# The Asio component's consumer, built wherever Asio is installed.
function(run_asio_consumer)
  if(EXISTS ${WORK_DIR}/build/asio_consumer)
    run(${WORK_DIR}/build/asio_consumer)
  elseif(EXISTS /usr/include/asio.hpp)
    message(FATAL_ERROR "Asio is installed, but the consumer did not build the Asio component's program")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(consumer ${SOURCE_DIR}/tests/consumer)
if(MODE STREQUAL "subdirectory")
  # The whole library is compiled again, inside the consumer's build: without
  # optimization or debug information (a Debug build with its -g taken out),
  # since what is tested is that add_subdirectory works, and a cold compile at
  # -O2 -g took 8 minutes of CI's run.
  run(${CMAKE_COMMAND} -S ${consumer} -B ${WORK_DIR}/build -G Ninja -DETCDLOCK_SOURCE_DIR=${SOURCE_DIR}
      -DETCDLOCK_BUILD_CLI=OFF -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=)
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/build -j2)
  run(${WORK_DIR}/build/consumer)
  run_prometheus_consumer()
  run_asio_consumer()
  return()
endif()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
if(MODE STREQUAL "installed")
  run(${CMAKE_COMMAND} -S ${consumer} -B ${WORK_DIR}/build -G Ninja -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
  run(${WORK_DIR}/build/consumer)
  run_prometheus_consumer()
  run_asio_consumer()
elseif(MODE STREQUAL "pkg-config")
  # Exactly as a user types it, in a shell: no --static, nothing added.
  file(GLOB pc_dirs ${WORK_DIR}/prefix/lib*/pkgconfig ${WORK_DIR}/prefix/lib/*/pkgconfig)
  set(ENV{PKG_CONFIG_PATH} "${pc_dirs}")
  run(sh -c "g++ ${consumer}/consumer.cc -o ${WORK_DIR}/consumer $(pkg-config --cflags --libs etcdlock)")
  run(${WORK_DIR}/consumer)
  if(EXISTS /usr/include/asio.hpp)
    run(sh -c "g++ -std=c++20 ${consumer}/asio_consumer.cc -o ${WORK_DIR}/asio_consumer $(pkg-config --cflags --libs etcdlock)")
    run(${WORK_DIR}/asio_consumer)
  endif()
endif()
