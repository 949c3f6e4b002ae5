export { multiTaskLeNet, type LeNet, type LeNetOptions } from "./lenet.js";
