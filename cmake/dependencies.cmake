# Libraries from Debian packages (scripts/setup.sh installs them): nlohmann-json, CLI11, zlib,
# OpenBLAS. stb is header-only (/usr/include/stb).
find_package(nlohmann_json 3.10 REQUIRED)
find_package(ZLIB REQUIRED)
set(BLA_VENDOR OpenBLAS)
find_package(BLAS REQUIRED)
find_path(FUSEDVAE_CLI11_INCLUDE CLI/CLI.hpp REQUIRED)
find_path(FUSEDVAE_STB_INCLUDE stb_image_write.h PATHS /usr/include/stb REQUIRED)
find_path(FUSEDVAE_CBLAS_INCLUDE cblas.h PATHS /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas REQUIRED)

target_link_libraries(fusedvae_core PUBLIC nlohmann_json::nlohmann_json ZLIB::ZLIB ${BLAS_LIBRARIES})
target_include_directories(fusedvae_core PUBLIC ${FUSEDVAE_CLI11_INCLUDE} ${FUSEDVAE_STB_INCLUDE}
                                                ${FUSEDVAE_CBLAS_INCLUDE})
