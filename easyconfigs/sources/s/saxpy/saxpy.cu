// saxpy: y = a*x + y on the GPU, checked against the exact answer on the host.
// Demo package of the modlib CUDA target: exit 0 and "max error = 0" on success,
// exit 2 with a clear message when no usable GPU is present.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <cuda_runtime.h>

#define SAXPY_VERSION "1.0"

__global__ void saxpy(int n, float a, const float *x, float *y)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = a * x[i] + y[i];
}

static int fail(const char *what, cudaError_t err, int rc)
{
    std::fprintf(stderr, "saxpy: %s: %s (%s)\n", what, cudaGetErrorString(err), cudaGetErrorName(err));
    return rc;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (std::strcmp(argv[1], "--version") == 0 || std::strcmp(argv[1], "-V") == 0)) {
        int rt = 0;
        cudaRuntimeGetVersion(&rt);
        std::printf("saxpy %s (CUDA runtime %d.%d)\n", SAXPY_VERSION, rt / 1000, (rt % 1000) / 10);
        return 0;
    }
    const int n = (argc > 1) ? std::atoi(argv[1]) : (1 << 20);
    if (n <= 0) {
        std::fprintf(stderr, "usage: %s [N>0] | --version\n", argv[0]);
        return 64;
    }

    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    if (drv == 0) {
        std::fprintf(stderr, "saxpy: no GPU available: NVIDIA driver (libcuda.so.1) not found\n");
        return 2;
    }
    if (drv < rt) {
        std::fprintf(stderr, "saxpy: no usable GPU: NVIDIA driver supports CUDA %d.%d, this binary needs %d.%d\n",
                     drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10);
        return 2;
    }
    int ndev = 0;
    cudaError_t err = cudaGetDeviceCount(&ndev);
    if (err != cudaSuccess)
        return fail("no usable CUDA GPU found", err, 2);
    if (ndev == 0) {
        std::fprintf(stderr, "saxpy: no CUDA GPU found\n");
        return 2;
    }
    cudaDeviceProp prop;
    if ((err = cudaGetDeviceProperties(&prop, 0)) != cudaSuccess)
        return fail("cudaGetDeviceProperties", err, 2);
    std::printf("saxpy: device 0: %s (compute capability %d.%d)\n", prop.name, prop.major, prop.minor);

    std::vector<float> x(n, 1.0f), y(n, 2.0f);
    float *dx = nullptr, *dy = nullptr;
    if ((err = cudaMalloc(&dx, n * sizeof(float))) != cudaSuccess ||
        (err = cudaMalloc(&dy, n * sizeof(float))) != cudaSuccess)
        return fail("cudaMalloc", err, 1);
    cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    cudaMemcpy(dy, y.data(), n * sizeof(float), cudaMemcpyHostToDevice);

    saxpy<<<(n + 255) / 256, 256>>>(n, 2.0f, dx, dy);
    if ((err = cudaGetLastError()) != cudaSuccess)
        return fail("kernel launch failed (no device code for this GPU?)", err, 1);
    if ((err = cudaMemcpy(y.data(), dy, n * sizeof(float), cudaMemcpyDeviceToHost)) != cudaSuccess)
        return fail("cudaMemcpy", err, 1);
    cudaFree(dx);
    cudaFree(dy);

    float max_error = 0.0f;
    for (int i = 0; i < n; i++)
        max_error = std::fmax(max_error, std::fabs(y[i] - 4.0f));
    std::printf("saxpy: N = %d, max error = %g\n", n, max_error);
    return max_error == 0.0f ? 0 : 1;
}
