# Libraries from Debian packages (scripts/setup.sh installs them): nlohmann-json, CLI11, zlib,
# oneDNN, OpenMP. stb is header-only (/usr/include/stb).
find_package(nlohmann_json 3.10 REQUIRED)
find_package(ZLIB REQUIRED)
# oneDNN (Debian's libdnnl-dev) for the CPU side's matrix products (host/ops/matmul_cpu.h). Its CMake
# package asks for OpenCL (its GPU runtime), which nothing here uses: find the library and header
# directly. Debian builds it on OpenMP (GNU libgomp): the CPU twins' loops share that pool.
find_library(FUSEDVAE_DNNL_LIBRARY dnnl REQUIRED)
find_path(FUSEDVAE_DNNL_INCLUDE oneapi/dnnl/dnnl.hpp REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_path(FUSEDVAE_CLI11_INCLUDE CLI/CLI.hpp REQUIRED)
find_path(FUSEDVAE_STB_INCLUDE stb_image_write.h PATHS /usr/include/stb REQUIRED)

target_link_libraries(fusedvae_core PUBLIC nlohmann_json::nlohmann_json ZLIB::ZLIB
                                           ${FUSEDVAE_DNNL_LIBRARY} OpenMP::OpenMP_CXX)
# The CPU twins compiled by nvcc (host/ops/*.cu) hand their OpenMP pragmas to the host compiler.
target_compile_options(fusedvae_core PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-fopenmp>)
target_include_directories(fusedvae_core PUBLIC ${FUSEDVAE_CLI11_INCLUDE} ${FUSEDVAE_STB_INCLUDE}
                                                ${FUSEDVAE_DNNL_INCLUDE})
