// The lens on Granite's multipliers and logits scaling and Phi-3's fused projections, as
// torch.onnx.export writes them (test/model/torch-parity.ts).
import { torchParityTests } from './torch-parity.js';

torchParityTests(['granite', 'phi3']);
