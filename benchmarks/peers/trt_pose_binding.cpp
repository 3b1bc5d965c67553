// pybind11 + numpy binding of trt_pose's parse (trt_pose/parse/*.cpp, MIT), without torch.
// One call runs what trt_pose.parse_objects.ParseObjects.__call__ runs: find_peaks,
// refine_peaks, paf_score_graph, assignment, connect_parts, with the output buffers allocated
// and initialised per call as trt_pose/plugins.cpp does (zeros / full(-1)).
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <cstdlib>
#include "find_peaks.hpp"
#include "refine_peaks.hpp"
#include "paf_score_graph.hpp"
#include "munkres.hpp"
#include "connect_parts.hpp"

namespace py = pybind11;
using namespace trt_pose::parse;
using farr = py::array_t<float, py::array::c_style | py::array::forcecast>;
using iarr = py::array_t<int, py::array::c_style | py::array::forcecast>;

py::tuple parse(farr cmap, farr paf, iarr topology, float cmap_threshold, float link_threshold,
                int cmap_window, int line_integral_samples, int max_num_parts, int max_num_objects) {
  const int C = cmap.shape(0), H = cmap.shape(1), W = cmap.shape(2);
  const int K = topology.shape(0), M = max_num_parts, P = max_num_objects;
  iarr counts({C});
  iarr peaks({C, M, 2});
  farr refined({C, M, 2});
  farr score_graph({K, M, M});
  iarr connections({K, 2, M});
  iarr objects({P, C});
  int object_count = 0;
  std::fill_n(counts.mutable_data(), C, 0);
  std::fill_n(peaks.mutable_data(), C * M * 2, 0);
  std::fill_n(refined.mutable_data(), C * M * 2, 0.f);
  std::fill_n(score_graph.mutable_data(), K * M * M, 0.f);
  std::fill_n(connections.mutable_data(), K * 2 * M, -1);
  std::fill_n(objects.mutable_data(), P * C, -1);
  {
    py::gil_scoped_release release;
    find_peaks_out_chw(counts.mutable_data(), peaks.mutable_data(), cmap.data(), C, H, W, M,
                       cmap_threshold, cmap_window);
    refine_peaks_out_chw(refined.mutable_data(), counts.data(), peaks.data(), cmap.data(), C, H, W,
                         M, cmap_window);
    paf_score_graph_out_khw(score_graph.mutable_data(), topology.data(), paf.data(), counts.data(),
                            refined.data(), K, C, H, W, M, line_integral_samples);
    void *workspace = malloc(assignment_out_workspace(M));
    assignment_out_k(connections.mutable_data(), score_graph.data(), topology.data(), counts.data(),
                     K, M, link_threshold, workspace);
    free(workspace);
    workspace = malloc(connect_parts_out_workspace(C, M));
    connect_parts_out(&object_count, objects.mutable_data(), connections.data(), topology.data(),
                      counts.data(), K, C, M, P, workspace);
    free(workspace);
  }
  return py::make_tuple(object_count, objects, refined, counts);
}

PYBIND11_MODULE(trtpose_parse, m) {
  m.def("parse", &parse, "trt_pose ParseObjects.__call__ on CPU arrays: (object_count, objects [P, C], "
        "normalized peaks [C, M, 2] (row, col) / (H, W), counts [C])");
}
